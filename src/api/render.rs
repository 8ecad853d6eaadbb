//! The [`Renderer`] the API uses in a running server: the live template set, rendering a
//! machine's config exactly as the boot port would serve it.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use super::Renderer;
use crate::machine::Machine;
use crate::templates::{Kind, Templates};

pub struct TemplateRenderer {
    pub templates: Arc<Templates>,
    /// the boot listener's address, for the URLs inside rendered scripts.
    pub boot_addr: SocketAddr,
}

impl Renderer for TemplateRenderer {
    fn status(&self) -> Value {
        let status = self.templates.status();
        let last_reload_ok = status.errors.is_empty();
        let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            // A refused reload leaves the last good set serving, so the server stays ready;
            // `last_reload_ok` tells the operator the files on disk need fixing.
            o.insert("ok".into(), Value::Bool(true));
            o.insert("last_reload_ok".into(), Value::Bool(last_reload_ok));
        }
        v
    }

    fn render(&self, machine: &Machine, template: &str) -> Result<String, String> {
        let kind = Kind::parse(template).ok_or_else(|| {
            let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown template kind `{template}`; use one of {}",
                kinds.join(", ")
            )
        })?;
        self.templates
            .render(self.boot_addr, machine, kind)
            .map_err(|e| e.to_string())
    }
}
