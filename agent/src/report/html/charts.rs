//! SVG charts for `report --html`, drawn with plotters' SVG backend (no fonts needed: text
//! stays `<text>` for the browser to render).
//!
//! Each series is one `<polyline>` carrying `data-series="NAME"` and its own dash pattern,
//! so the chart reads in black and white and a test can count its points in the DOM.
//! Charts are drawn from the report's bounded timelines (at most `TIMELINE_ROWS` points a
//! series), so a page stays small whatever the trace's length.
use plotters::{
    coord::types::RangedCoordf64,
    prelude::*,
    style::{RGBColor, ShapeStyle},
};

/// Chart size in SVG user units; the page scales it to its column.
pub const WIDTH: u32 = 760;
pub const HEIGHT: u32 = 280;

/// Colour-blind safe (Okabe–Ito), each with a dash pattern that tells it apart in grey.
const STYLES: [(RGBColor, &str); 5] = [
    (RGBColor(0, 0, 0), ""),
    (RGBColor(0, 114, 178), "9 4"),
    (RGBColor(230, 159, 0), "3 3"),
    (RGBColor(0, 158, 115), "12 3 3 3"),
    (RGBColor(204, 121, 167), "6 2"),
];
const STROKE: u32 = 2;
/// Reference lines (the parent's RSS at fork, a memory limit).
const REF_COLOR: RGBColor = RGBColor(213, 94, 0);

/// One series of a line chart: a name for its legend and `(x, y)` points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A horizontal line at `y`, named in the legend (for example the RSS at fork).
pub struct Reference {
    pub name: String,
    pub y: f64,
}

/// What a chart shows: its title and the descriptions of its axes (with their units).
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Upper end of an axis: the largest value with 8% headroom, and never an empty range.
fn top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.08
    } else {
        1.0
    }
}

/// A line chart of `series` against `refs`, as an `<svg>` element.
pub fn lines(axes: &Axes, series: &[Series], refs: &[Reference]) -> String {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(refs.iter().map(|r| r.y))
        .fold(0.0, f64::max);
    let mut svg = String::new();
    // Drawing into a String fails only on a plotters bug; the chart is then left out
    // with a note rather than a broken page.
    if let Err(e) = draw_lines(&mut svg, axes, series, refs, top(x_max), top(y_max)) {
        return missing(axes.title, &e.to_string());
    }
    mark_series(
        &svg,
        series
            .iter()
            .map(|s| s.name.as_str())
            .zip(STYLES.iter().cycle()),
    )
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white chart with its title and room for the axes' labels, `0..x_max` × `0..y_max`.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    axes: &Axes,
    x_max: f64,
    y_max: f64,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    Ok(ChartBuilder::on(root)
        .caption(axes.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?)
}

fn draw_lines(
    svg: &mut String,
    axes: &Axes,
    series: &[Series],
    refs: &[Reference],
    x_max: f64,
    y_max: f64,
) -> DrawResult {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    let mut chart = frame(&root, axes, x_max, y_max)?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_labels(8)
        .y_labels(6)
        .y_label_formatter(&|v| short(*v))
        .x_label_formatter(&|v| short(*v))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for (s, (color, _)) in series.iter().zip(STYLES.iter().cycle()) {
        let _ = &s.name;
        let style = ShapeStyle::from(color).stroke_width(STROKE);
        chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
    }
    for r in refs {
        let style = ShapeStyle::from(&REF_COLOR).stroke_width(1);
        chart.draw_series(DashedLineSeries::new(
            [(0.0, r.y), (x_max, r.y)],
            4,
            4,
            style,
        ))?;
    }
    root.present()?;
    Ok(())
}

/// The legend of a line chart as HTML (beside the SVG, so it never hides a line): a
/// sample of each series' stroke and dash pattern, and of the reference lines.
pub fn legend(series: &[Series], refs: &[Reference]) -> String {
    let sample = |color: RGBColor, width: u32, dash: &str| {
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        format!(
            "<svg width=\"28\" height=\"10\" viewBox=\"0 0 28 10\" aria-hidden=\"true\"><line x1=\"0\" y1=\"5\" x2=\"28\" y2=\"5\" stroke=\"{}\" stroke-width=\"{width}\"{dash}/></svg>",
            hex(color)
        )
    };
    let mut out = String::from("<ul class=\"legend\">");
    for (s, (color, dash)) in series.iter().zip(STYLES.iter().cycle()) {
        out.push_str(&format!(
            "<li>{} {}</li>",
            sample(*color, STROKE, dash),
            attr(&s.name)
        ));
    }
    for r in refs {
        out.push_str(&format!(
            "<li>{} {}</li>",
            sample(REF_COLOR, 1, "4 4"),
            attr(&r.name)
        ));
    }
    out.push_str("</ul>");
    out
}

/// Power-of-two buckets from the lowest to the highest, the empty ones included (a
/// histogram that skipped them would hide gaps).
pub fn contiguous(data: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (Some(first), Some(last)) = (data.first(), data.last()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut lo = first.0.max(1);
    loop {
        let count = data.iter().filter(|b| b.0.max(1) == lo).map(|b| b.1).sum();
        out.push((lo, count));
        if lo >= last.0 || out.len() >= 64 {
            break;
        }
        lo = lo.saturating_mul(2);
    }
    out
}

/// A histogram of power-of-two buckets `(lowest value, count)`, labelled by `label`.
pub fn buckets(axes: &Axes, data: &[(u64, u64)], label: impl Fn(u64) -> String) -> String {
    let data = &contiguous(data);
    let labels: Vec<String> = data.iter().map(|b| label(b.0)).collect();
    let y_max = data.iter().map(|b| b.1).max().unwrap_or(0) as f64;
    let mut svg = String::new();
    if let Err(e) = draw_buckets(&mut svg, axes, data, &labels, top(y_max)) {
        return missing(axes.title, &e.to_string());
    }
    mark_bars(&svg)
}

fn draw_buckets(
    svg: &mut String,
    axes: &Axes,
    data: &[(u64, u64)],
    labels: &[String],
    y_max: f64,
) -> DrawResult {
    let n = data.len().max(1) as f64;
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    let mut chart = frame(&root, axes, n, y_max)?;
    // The buckets' labels are drawn below, one under each bar; the mesh has none.
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_labels(0)
        .disable_x_mesh()
        // Counts are whole: no more labels than there are integers on the axis.
        .y_labels((y_max.ceil() as usize + 1).min(6))
        .y_label_formatter(&|v| short(*v))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    // Dark grey bars with a black outline print the same in colour and in grey.
    chart.draw_series(data.iter().enumerate().map(|(i, &(_, count))| {
        let x = i as f64;
        Rectangle::new(
            [(x + 0.08, 0.0), (x + 0.92, count as f64)],
            RGBColor(90, 90, 90).filled(),
        )
    }))?;
    let style = TextStyle::from(("sans-serif", 12)).color(&BLACK).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ),
    );
    // Every label when they fit (about 7 px a character), else every k-th.
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64;
    let room = f64::from(WIDTH - 90) / n;
    let every = ((widest * 7.0 + 8.0) / room).ceil().max(1.0) as usize;
    for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(l.as_str(), (x, y + 4), style.clone()))?;
    }
    root.present()?;
    Ok(())
}

/// An axis value, short: `850`, `12.5`, `1.2k`, `3.4M`.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Give each series' `<polyline>`s (the line and its legend sample) their dash pattern
/// and a `data-series` name. plotters draws a series in its colour only, and a series'
/// colour is unique in a chart, so the colour attribute finds its lines.
fn mark_series<'a>(
    svg: &str,
    named: impl Iterator<Item = (&'a str, &'a (RGBColor, &'a str))>,
) -> String {
    let mut out = svg.to_string();
    for (name, (color, dash)) in named {
        let needle = format!("stroke=\"{}\" stroke-width=\"{STROKE}\"", hex(*color));
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let with = format!("{needle}{dash} data-series=\"{}\"", attr(name));
        out = out.replace(&needle, &with);
    }
    out
}

/// The histogram's bars, named for the DOM like the series of a line chart.
fn mark_bars(svg: &str) -> String {
    svg.replace("fill=\"#5A5A5A\"", "fill=\"#5A5A5A\" data-series=\"bar\"")
}

/// A placeholder saying why a chart is missing.
fn missing(title: &str, why: &str) -> String {
    format!(
        "<p class=\"missing\">{}: chart not drawn ({})</p>",
        attr(title),
        attr(why)
    )
}

/// Text safe inside an HTML attribute or element.
pub fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {
                out.push_str(&format!("&#x{:x};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes() -> Axes<'static> {
        Axes {
            title: "COW <copied>",
            x: "seconds after the fork",
            y: "MiB",
        }
    }

    /// Points of the polylines of one series.
    fn points(svg: &str, series: &str) -> Vec<usize> {
        svg.split("<polyline")
            .skip(1)
            .filter(|p| p.contains(&format!("data-series=\"{series}\"")))
            .map(|p| {
                let pts = p.split("points=\"").nth(1).unwrap_or("");
                pts.split('"')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .collect()
    }

    #[test]
    fn each_series_is_one_named_dashed_polyline_with_every_point() {
        let series = vec![
            Series {
                name: "parent".into(),
                points: (0..50).map(|i| (f64::from(i), f64::from(i * 2))).collect(),
            },
            Series {
                name: "child".into(),
                points: (0..50).map(|i| (f64::from(i), 1.0)).collect(),
            },
        ];
        let refs = [Reference {
            name: "RSS at fork".into(),
            y: 120.0,
        }];
        let svg = lines(&axes(), &series, &refs);
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        // The line with every point, and the legend's two-point sample.
        assert_eq!(points(&svg, "parent"), [50]);
        assert_eq!(points(&svg, "child"), [50]);
        assert!(svg.contains("stroke-dasharray=\"9 4\" data-series=\"child\""));
        assert!(svg.contains("COW &lt;copied&gt;"), "title escaped");
        assert!(svg.contains("seconds after the fork"));
        let l = legend(&series, &refs);
        assert!(
            l.contains("stroke-dasharray=\"9 4\"/></svg> child</li>"),
            "{l}"
        );
        assert!(l.contains("RSS at fork"), "{l}");
    }

    #[test]
    fn empty_and_flat_data_still_draw_axes() {
        let svg = lines(&axes(), &[], &[]);
        assert!(svg.starts_with("<svg"));
        let svg = lines(
            &axes(),
            &[Series {
                name: "x".into(),
                points: vec![(0.0, 0.0)],
            }],
            &[],
        );
        assert!(svg.starts_with("<svg"));
        let svg = buckets(&axes(), &[], |v| v.to_string());
        assert!(svg.starts_with("<svg"));
    }

    #[test]
    fn histogram_has_a_bar_per_bucket_and_its_labels() {
        let svg = buckets(&axes(), &[(1, 3), (2, 0), (4, 9)], |v| format!("{v}us"));
        assert_eq!(svg.matches("data-series=\"bar\"").count(), 3);
        assert!(svg.contains("4us"));
        assert_eq!(
            contiguous(&[(1, 5), (8, 2)]),
            [(1, 5), (2, 0), (4, 0), (8, 2)],
            "empty buckets between are drawn"
        );
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(2.5), "2.50");
        assert_eq!(short(12.25), "12.2");
        assert_eq!(short(850.0), "850");
        assert_eq!(short(12_500.0), "12k");
        assert_eq!(short(3_400_000.0), "3.4M");
    }

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(attr("a<b>&\"'\u{1b}"), "a&lt;b&gt;&amp;&quot;&#39;&#x1b;");
    }
}
