//! `ebb ui [--print]`: the dashboard's one-time login URL, opened in a browser or printed.

use crate::output::out;
use ebb_client::Client;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Asks the server for a login URL and opens it (or prints it with `--print`, or when there is
/// no desktop to open it on). The URL's code works once and for a minute: the browser's command
/// line shows it only until the browser has used it.
pub async fn ui(client: &Client, print: bool) -> anyhow::Result<()> {
    let login = client.ui_login().await?;
    let url = format!("{}{}", client.base(), login.path);
    if !print && open_in_browser(&url) {
        eprintln!(
            "opened the dashboard in your browser (if it did not open, run `ebb ui --print`: the link works once, within {}s)",
            login.expires_in_s
        );
        return Ok(());
    }
    out!("{url}");
    eprintln!(
        "open this within {}s; it works once, and logs that browser in to read the dashboard",
        login.expires_in_s
    );
    Ok(())
}

/// Hands `url` to the desktop's opener; false when there is no desktop or no opener.
fn open_in_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
        if !desktop {
            return false;
        }
        "xdg-open"
    };
    let Ok(mut child) = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    // Openers hand the URL over and exit; one that runs a terminal browser itself would not
    // return until that browser ends: then it opened, and this command is done.
    let deadline = Instant::now() + OPENER_WAIT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return false,
        }
    }
    true
}

/// How long `ebb ui` waits for the desktop's opener to say whether it opened the URL.
const OPENER_WAIT: Duration = Duration::from_secs(5);
