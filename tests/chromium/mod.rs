//! Debian's Chromium, headless, for the browser tests (`tests/browser.rs`):
//! a fresh profile per call, no network beyond what the page asks for, and
//! the page's DOM as the browser left it (`--dump-dom`).
//!
//! Without `chromium` on the PATH a test is skipped here and fails under
//! `CI` (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

/// The DOM after the page ran for `budget_ms` of virtual time, or `None`
/// (skipped) when Chromium is not installed and `CI` is not set.
pub fn dump_dom(url: &str, budget_ms: u32) -> Option<String> {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args(flags(profile.path()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .output();
    match out {
        Ok(o) => {
            assert!(
                o.status.success(),
                "chromium failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8(o.stdout).unwrap())
        }
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: chromium is not installed here (.ci/run installs it): {e}");
            None
        }
        Err(e) => panic!("chromium is needed under CI (.ci/run installs it): {e}"),
    }
}

fn flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The checks a test page runs once the report has loaded: every chart
/// figure laid out with a visible SVG, its lines and bars drawn, and every
/// label inside its chart (a clipped tick label fails); page errors
/// collected. The result lands in `<pre id="browser-check">` as JSON.
pub const CHECK_SCRIPT: &str = r#"<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message)); });
  window.addEventListener('load', function () {
    var charts = [];
    document.querySelectorAll('figure.chart').forEach(function (f) {
      var svg = f.querySelector('svg');
      var box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
      var outside = [];
      if (svg) svg.querySelectorAll('text').forEach(function (t) {
        if (!t.textContent.trim()) return;
        var r = t.getBoundingClientRect();
        if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
          outside.push(t.textContent.trim());
      });
      charts.push({
        id: f.getAttribute('data-chart'),
        width: box.width, height: box.height,
        lines: svg ? svg.querySelectorAll('polyline, path').length : 0,
        rects: svg ? svg.querySelectorAll('rect').length : 0,
        texts: svg ? svg.querySelectorAll('text').length : 0,
        outside: outside
      });
    });
    var pre = document.createElement('pre');
    pre.id = 'browser-check';
    pre.textContent = JSON.stringify({ charts: charts, errors: errors });
    document.body.appendChild(pre);
  });
})();
</script>"#;

/// The JSON the check script left in the dumped DOM.
pub fn check_result(dom: &str) -> serde_json::Value {
    let start = dom
        .find(r#"<pre id="browser-check">"#)
        .unwrap_or_else(|| panic!("the check script did not run: {dom}"))
        + r#"<pre id="browser-check">"#.len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap()
}
