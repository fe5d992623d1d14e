//! The page around the report: head, style sheet (screen and A4 print), and a
//! Content-Security-Policy that forbids every load, so the page works offline, from a
//! file or an e-mail attachment, and never calls out.
use super::charts::attr;

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
       background: #fff; max-width: 1100px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 24px 0 8px; border-bottom: 1px solid #999; }
h3 { font-size: 16px; margin: 0 0 6px; }
h4 { font-size: 14px; margin: 8px 0 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; white-space: nowrap; }
table.sessions { font-size: 13px; }
table.sessions td, table.sessions th { white-space: nowrap; }
div.wide { overflow-x: auto; }
section.session { border-top: 2px solid #333; padding-top: 12px; margin-top: 20px; }
section.warnings { border: 2px solid #000; padding: 4px 12px; margin: 12px 0; }
.diagnosis ul { margin: 0; padding-left: 20px; }
figure.chart { margin: 12px 0; }
figure.chart > svg { width: 100%; height: auto; max-width: 760px; display: block; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 18px; padding: 0; margin: 4px 0; font-size: 13px; }
ul.legend svg { vertical-align: middle; }
figcaption { font-size: 12px; color: #333; }
p.note { font-size: 13px; color: #333; }
p.missing { border: 1px dashed #000; padding: 6px; }
details { margin: 4px 0 12px; }
a { color: #0645ad; }
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  table.sessions { font-size: 7.5pt; }
  div.wide { overflow: visible; }
  section.session { break-before: page; border-top: none; }
  figure.chart, table, dl.facts, .diagnosis { break-inside: avoid; }
  figure.chart > svg { max-width: 100%; }
  details > table { display: none; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// A complete HTML document with `body` inside.
pub fn wrap(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"cowtrace {}\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\
         <footer><p class=\"note\">Made by cowtrace {} from the trace alone: the same trace gives the same page.</p></footer>\n\
         </body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        attr(title),
        env!("CARGO_PKG_VERSION"),
    )
}
