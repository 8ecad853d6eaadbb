//! `mayu import-mayu`: a Mayu cluster folder the test writes becomes inventory machines, one
//! commit each; unknown fields land in notes; bad files are reported and skipped.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use mayu::machine::State;
use support::Lab;

#[test]
fn imports_a_mayu_cluster_folder() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    engine.flush().unwrap();
    let base = lab.commits();
    let mayu = lab.path().join("mayu-cluster");
    let host = |serial: &str, body: &str| {
        std::fs::create_dir_all(mayu.join(serial)).unwrap();
        std::fs::write(mayu.join(serial).join("conf.json"), body).unwrap();
    };
    std::fs::create_dir_all(&mayu).unwrap();
    std::fs::write(
        mayu.join("cluster.json"),
        r#"{"GitStore":true,"Config":{}}"#,
    )
    .unwrap();
    host(
        "S1",
        r#"{"Id":1,"Serial":"S1","MacAddresses":["00:16:3e:00:00:01"],"InternalAddr":"10.0.0.11",
            "IPMIAddr":"10.1.0.11","ProviderId":"aws-1","Profile":"worker","State":"running",
            "Overrides":{"flannel":"vxlan"},"Enabled":true,"EtcdClusterToken":"abc",
            "Cabinet":3,"MachineOnCabinet":12,"LastBoot":"2016-03-01T10:20:30Z"}"#,
    );
    host(
        "S2",
        r#"{"Serial":"S2","MacAddresses":["00:16:3e:00:00:02"],"Profile":"gone","State":1,
            "Cabinet":0,"LastBoot":"0001-01-01T00:00:00Z"}"#,
    );
    // Mayu's store is a git repository: its `.git` is no machine, not even a skipped one.
    host(".git", r#"{"Serial":"HEAD"}"#);
    host("S3", "{ broken");
    host("S4", r#"{"Serial":"S4","MacAddresses":["not-a-mac"]}"#);

    // A dry run says what would happen and writes nothing.
    let plan = mayu::import::import_dir_with(&engine, &mayu, true).unwrap();
    let ids: Vec<_> = plan.imported.iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, vec!["s1", "s2"]);
    assert_eq!(plan.skipped.len(), 2);
    assert!(engine.find("s1").is_none());
    engine.flush().unwrap();
    assert_eq!(lab.commits(), base);

    let report = mayu::import::import_dir(&engine, &mayu).unwrap();
    let ids: Vec<_> = report.imported.iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, vec!["s1", "s2"]);
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|(p, why)| format!("{} {why}", p.display()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].contains("S3/conf.json"), "{skipped:?}");
    assert!(
        skipped[1].contains("S4/conf.json") && skipped[1].contains("not-a-mac"),
        "{skipped:?}"
    );

    let s1 = engine.find("s1").unwrap();
    assert_eq!(s1.profile.as_deref(), Some("worker"));
    assert_eq!(s1.state, State::Running);
    assert_eq!(s1.ip.unwrap().to_string(), "10.0.0.11");
    assert_eq!(s1.ipmi_addr.as_deref(), Some("10.1.0.11"));
    assert_eq!(s1.provider_id.as_deref(), Some("aws-1"));
    assert_eq!(s1.overrides["flannel"], "vxlan");
    let rack = s1.rack.as_ref().unwrap();
    assert_eq!((rack.rack.as_str(), rack.unit), ("3", Some(12)));
    let last = time::macros::datetime!(2016-03-01 10:20:30 UTC);
    assert_eq!(s1.phases.boot_complete, Some(last));
    let t = engine.timeline(&s1.id);
    let step = &t.current().unwrap().steps[0];
    assert_eq!(
        (step.kind, step.at),
        (mayu::timeline::StepKind::BootComplete, last)
    );
    assert!(!s1.notes.contains("Cabinet"), "{}", s1.notes);
    // Mayu's etcd token is a field of its own now, not a note.
    assert_eq!(s1.etcd_token.as_deref(), Some("abc"));
    assert!(!s1.notes.contains("EtcdClusterToken"), "{}", s1.notes);
    assert!(s1.notes.contains("\"Enabled\":true"), "{}", s1.notes);
    let s2 = engine.find("00:16:3e:00:00:02").unwrap();
    assert_eq!(s2.profile, None);
    assert_eq!(s2.rack, None, "Cabinet 0 is Mayu's unset");
    assert_eq!(s2.phases.boot_complete, None, "Go's zero time is no boot");
    assert!(
        s2.notes.contains("`gone` is not configured"),
        "{}",
        s2.notes
    );

    engine.flush().unwrap();
    assert_eq!(lab.commits(), base + 2, "one commit per machine");
    let h = engine.history("s1").unwrap();
    assert_eq!(h[0].author, "mayu-import");
    assert_eq!(h[0].message, "s1: imported from mayu");

    // Importing again changes nothing.
    let again = mayu::import::import_dir(&engine, &mayu).unwrap();
    assert!(again.imported.is_empty());
    engine.flush().unwrap();
    assert_eq!(lab.commits(), base + 2);
}
