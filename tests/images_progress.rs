//! What `mayu::images::fetch::fetch` reports while it runs: a swept leftover, then for each
//! file of the release its start, its bytes (the last report the whole file) and its end;
//! signatures are not reported. The console draws these; the library never prints.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod images_support;

use images_support::{have, publish_flatcar, set_current, Gpg, Server, INITRD, KERNEL};
use mayu::images::fetch::{fetch, FetchRequest, Outcome, Progress, Vendor};

/// A [`Progress`] with its borrowed parts owned, to keep after the call.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    RemovedLeftover(String),
    Started {
        role: String,
        url: String,
    },
    Received {
        file: String,
        got: u64,
        expected: Option<u64>,
    },
    Finished {
        file: String,
    },
}

impl From<Progress<'_>> for Seen {
    fn from(p: Progress<'_>) -> Seen {
        match p {
            Progress::RemovedLeftover(path) => Seen::RemovedLeftover(path.display().to_string()),
            Progress::Started { role, url } => Seen::Started {
                role: role.into(),
                url: url.into(),
            },
            Progress::Received {
                file,
                got,
                expected,
            } => Seen::Received {
                file: file.into(),
                got,
                expected,
            },
            Progress::Finished { file } => Seen::Finished { file: file.into() },
        }
    }
}

#[tokio::test]
async fn a_fetch_reports_leftovers_and_each_files_download() {
    if !(have("gpg") && have("gpgv")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let gpg = Gpg::new("vendor");
    let key = dir.path().join("vendor.asc");
    gpg.export(&key);
    let (kernel, initrd) = publish_flatcar(&server, &gpg, "4081.2.0");
    set_current(&server, "4081.2.0");
    let images = dir.path().join("images");
    // As a killed fetch leaves it: pid 999999999 cannot be alive (above Linux's pid_max).
    let crashed = images.join("flatcar/.fetch-999999999-0-4081.2.0");
    std::fs::create_dir_all(&crashed).unwrap();

    let req = FetchRequest {
        vendor: Vendor::Flatcar,
        channel: "stable".into(),
        version: None,
        mirror: Some(server.url()),
        key: Some(key),
        disk_image: false,
    };
    let mut seen = Vec::new();
    let outcome = fetch(&images, &req, &mut |p| seen.push(Seen::from(p)))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Fetched { .. }), "{outcome:?}");

    assert_eq!(
        seen.first(),
        Some(&Seen::RemovedLeftover(crashed.display().to_string()))
    );
    let mut rest = seen[1..].iter().peekable();
    for (role, name, data) in [("kernel", KERNEL, &kernel), ("initrd", INITRD, &initrd)] {
        let url = format!("{}/amd64-usr/4081.2.0/{name}", server.url());
        assert_eq!(
            rest.next(),
            Some(&Seen::Started {
                role: role.into(),
                url
            }),
            "{seen:#?}"
        );
        let size = data.len() as u64;
        let mut last = None;
        while let Some(Seen::Received {
            file,
            got,
            expected,
        }) = rest.peek()
        {
            assert_eq!(file, name);
            assert_eq!(*expected, Some(size));
            assert!(last.is_none_or(|l| l <= *got), "{seen:#?}");
            last = Some(*got);
            rest.next();
        }
        assert_eq!(
            last,
            Some(size),
            "the last report is the whole file: {seen:#?}"
        );
        assert_eq!(
            rest.next(),
            Some(&Seen::Finished { file: name.into() }),
            "{seen:#?}"
        );
    }
    assert_eq!(rest.next(), None, "{seen:#?}");
}
