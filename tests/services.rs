//! A service task that panics does not vanish: its service turns `failed` with the panic's
//! message, which the console header, `/api/v1/services` and `mayuctl services` show.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use mayu::lease::ServiceStatus;
use support::Lab;

#[tokio::test]
async fn a_panicking_service_task_is_a_failed_service_with_the_reason() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    engine.set_service("boot-http", ServiceStatus::Running, 0, "127.0.0.1:1");
    let watcher = mayu::services::supervised(&engine, "boot-http", async {
        panic!("boom in the listener");
    });
    watcher.await.unwrap();
    let s = engine
        .services()
        .into_iter()
        .find(|s| s.name == "boot-http")
        .unwrap();
    assert_eq!(s.status, ServiceStatus::Failed);
    let problem = s.problem.unwrap();
    assert!(
        problem.reason.contains("boom in the listener"),
        "{problem:?}"
    );

    // A task that ends normally changes nothing.
    engine.set_service("templates", ServiceStatus::Watching, 0, "");
    mayu::services::supervised(&engine, "templates", async {})
        .await
        .unwrap();
    let t = engine
        .services()
        .into_iter()
        .find(|s| s.name == "templates")
        .unwrap();
    assert_eq!(t.status, ServiceStatus::Watching);
}
