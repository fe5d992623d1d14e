//! `report --html A B`: the comparison as a page.
use std::fmt::Write as _;

use super::{
    MIB,
    charts::{Axes, Series, attr},
    head, line_figure, or_unknown, page, row,
};
use crate::{report::compare::Comparison, text::date::utc};

/// `report --html A B`: the comparison as a page.
pub fn compare_page(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<header><h1>cowtrace: A compared with B</h1>");
    out.push_str("<dl class=\"facts\">\n");
    for (n, s) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            out,
            "<dt>{n}</dt><dd>{} (host {}, {} session(s){})</dd>",
            attr(&s.file),
            or_unknown(&s.host),
            s.sessions,
            s.start_unix_ms
                .map_or(String::new(), |ms| format!(", recorded {}", utc(ms, false)))
        );
    }
    out.push_str("</dl></header>\n");
    if !c.notes.is_empty() {
        out.push_str("<section class=\"warnings\"><h2>Notes</h2><ul>\n");
        for n in &c.notes {
            let _ = writeln!(out, "<li>{}</li>", attr(n));
        }
        out.push_str("</ul></section>\n");
    }
    out.push_str("<section><h2>Settings</h2><table class=\"settings\">\n");
    head(&mut out, &["setting", "A", "B", ""]);
    out.push_str("<tbody>\n");
    for s in &c.settings {
        row(
            &mut out,
            &[
                (s.name.to_string(), false),
                (attr(&s.a), false),
                (attr(&s.b), false),
                (
                    (if s.differs {
                        "<strong>differs</strong>"
                    } else {
                        ""
                    })
                    .into(),
                    false,
                ),
            ],
        );
    }
    out.push_str("</tbody></table></section>\n");
    if c.groups.is_empty() {
        out.push_str(
            "<p class=\"note\">No fork session in either trace: nothing to compare.</p>\n",
        );
    }
    for (i, g) in c.groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "<section class=\"group\" id=\"group-{i}\"><h2>{}</h2><p>Medians over A's {} and B's {} ended session(s).</p>",
            attr(&g.title()),
            g.saves_a,
            g.saves_b
        );
        if let Some(v) = g.verdict() {
            let _ = writeln!(
                out,
                "<p class=\"verdict\"><strong>{}</strong></p>",
                attr(&v)
            );
        }
        out.push_str("<table class=\"compare\">\n");
        head(&mut out, &["figure", "A", "B", "change (B − A)"]);
        out.push_str("<tbody>\n");
        for f in &g.figures {
            let [a, b, d] = f.cells();
            row(
                &mut out,
                &[(f.name.to_string(), false), (a, true), (b, true), (d, true)],
            );
        }
        out.push_str("</tbody></table>\n");
        let per_save = |v: &[u64]| -> Vec<(f64, f64)> {
            v.iter()
                .enumerate()
                .map(|(i, &b)| ((i + 1) as f64, b as f64 / MIB))
                .collect()
        };
        let series = [
            Series {
                name: "A".into(),
                points: per_save(&g.cow_per_save_a),
            },
            Series {
                name: "B".into(),
                points: per_save(&g.cow_per_save_b),
            },
        ];
        line_figure(
            &mut out,
            "cow-per-save",
            &Axes {
                title: "COW of each save",
                x: "save, in the order of the trace",
                y: "MiB",
            },
            &series,
            &[],
            "Each point is one ended session of this server and kind.",
        );
        out.push_str("</section>\n");
    }
    page::wrap("cowtrace: A compared with B", &out)
}
