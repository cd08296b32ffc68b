//! The report page in a real browser: headless Chromium opens it from
//! file://, must print nothing to its console (the page has no scripts, so
//! any console message is an error: a blocked fetch, a parse error) and
//! takes a screenshot. Runs only where Chromium is installed
//! (`/usr/bin/chromium`, or the path in `TCPMAX_CHROMIUM`) and says why it
//! skips otherwise.
//!
//! By default it draws a small bench run of its own. `benches/report_browser.sh`
//! sets `TCPMAX_REPORT_JSON` (reports to draw, separated by `:`) and
//! `TCPMAX_REPORT_SCREENSHOT` (where to keep the PNG) to make the README's
//! screenshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tcpmax;

fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("TCPMAX_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file())
}

/// Opens `page` in headless Chromium, saves a `width` x `height` screenshot
/// to `png`; returns the console messages of the page.
fn open(browser: &Path, page: &Path, png: &Path, (width, height): (u32, u32)) -> Vec<String> {
    let stem = png.file_stem().unwrap().to_string_lossy();
    let profile = std::env::temp_dir().join(format!("tcpmax-chromium-{}-{stem}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let png_bytes = std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot {}: {e}\n{stderr}", png.display()));
    assert!(png_bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
    // Chromium logs every console message of the page as `...:CONSOLE...`,
    // whatever its level.
    stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect()
}

#[test]
fn the_report_opens_in_chromium_without_a_console_message() {
    let Some(browser) = chromium() else {
        common::skip("no Chromium at /usr/bin/chromium (apt-get install chromium) or in TCPMAX_CHROMIUM");
        return;
    };
    let dir = std::env::temp_dir().join(format!("tcpmax-report-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The check can fail: a page that writes to the console is caught.
    let noisy = dir.join("noisy.html");
    std::fs::write(&noisy, "<!DOCTYPE html><html><body><script>console.error('deliberate')</script></body></html>")
        .unwrap();
    let caught = open(&browser, &noisy, &dir.join("noisy.png"), (400, 300));
    assert!(caught.iter().any(|l| l.contains("deliberate")), "the console check sees messages: {caught:?}");

    let page = dir.join("report.html");
    let inputs: Vec<String> = match std::env::var("TCPMAX_REPORT_JSON") {
        Ok(list) => list.split(':').map(str::to_string).collect(),
        Err(_) => {
            let json = dir.join("run.json");
            let out = tcpmax(&["bench", "-c", "2k", "--hold", "2s", "--json", json.to_str().unwrap()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            vec![json.to_str().unwrap().to_string()]
        }
    };
    let mut args = vec!["report"];
    args.extend(inputs.iter().map(String::as_str));
    args.extend(["-o", page.to_str().unwrap()]);
    let out = tcpmax(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let png = std::env::var_os("TCPMAX_REPORT_SCREENSHOT").map_or_else(|| dir.join("report.png"), PathBuf::from);
    // Two columns of plots under the tables: tall enough for all of them.
    let messages = open(&browser, &page, &png, (1540, 2460));
    assert!(messages.is_empty(), "console messages: {messages:#?}");
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 100_000, "a screenshot of plots, not of an empty page: {size} bytes");
    eprintln!("screenshot: {}", png.display());
    let _ = std::fs::remove_dir_all(&dir);
}
