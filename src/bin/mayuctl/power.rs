//! `mayuctl power ID ACTION` (or `power ACTION ID`, Mayu's order): one power request to the
//! API and what the BMC then reported.

use mayu::client::Client;
use mayu::power::{PowerAction, PowerOutcome};
use time::format_description::well_known::Rfc3339;

use crate::output::{self, clean};
use crate::Usage;

/// Which of the two words is the action: the one that names one (the first, if both do).
pub fn split<'a>(first: &'a str, second: &'a str) -> Result<(&'a str, PowerAction), Usage> {
    if let Ok(a) = first.parse::<PowerAction>() {
        return Ok((second, a));
    }
    match second.parse::<PowerAction>() {
        Ok(a) => Ok((first, a)),
        Err(e) => Err(Usage(e)),
    }
}

pub fn text(o: &PowerOutcome) -> String {
    let at = o.power.checked_at.format(&Rfc3339).unwrap_or_default();
    let mut s = match o.action {
        PowerAction::Status => format!(
            "{}: power {} (checked {at})",
            clean(o.id.as_str()),
            o.power.state
        ),
        PowerAction::Reinstall => format!(
            "{}: reinstalling now: next boot from the network, power {}",
            clean(o.id.as_str()),
            o.power.state
        ),
        a => format!(
            "{}: power {} -> {}",
            clean(o.id.as_str()),
            a.as_str(),
            o.power.state
        ),
    };
    if let Some(note) = &o.note {
        s.push_str(&format!("\nnote: {}", clean(note)));
    }
    s
}

pub async fn run(client: &Client, first: &str, second: &str, json: bool) -> anyhow::Result<()> {
    let (id, action) = split(first, second)?;
    let o = client.power(id, action.as_str()).await?;
    if json {
        println!("{}", output::json(&serde_json::to_value(&o)?));
    } else {
        println!("{}", text(&o));
    }
    Ok(())
}
