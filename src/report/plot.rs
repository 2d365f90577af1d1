//! Draws every chart of the reports as inline SVG with `plotters` (its SVG
//! backend only, `default-features = false`): line charts over time, the
//! knee chart of a capacity search, percentile spectra, bar charts of
//! latency distributions, trend lines across runs.
//!
//! Text needs no font library: the SVG backend writes `<text>` elements the
//! browser draws, and without plotters' `ttf`/`ab_glyph` features label
//! boxes are sized by its built-in estimate (a little generous, which only
//! moves labels a few pixels). Ticks and their labels come from `ticks.rs`
//! (plotters' own key points would print 2.5 as "2"): the axes here are a
//! [`Ticked`] range whose key points are exactly the ticks given.
//!
//! Each chart is a `<figure class="chart" data-chart="ID">`, which the
//! browser tests count. Imports `ticks.rs` only (a leaf of `report`).

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ticks::Axis;

/// The palette: p50, p95, p99, ok, extra, extra.
pub const COLORS: [RGBColor; 6] = [
    RGBColor(0x25, 0x63, 0xeb),
    RGBColor(0xf5, 0x9e, 0x0b),
    RGBColor(0xdc, 0x26, 0x26),
    RGBColor(0x05, 0x96, 0x69),
    RGBColor(0x7c, 0x3a, 0xed),
    RGBColor(0x08, 0x91, 0xb2),
];

/// A linear axis whose key points are exactly the given ticks.
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn of(a: &Axis) -> Ticked {
        Ticked {
            lo: a.lo,
            hi: a.hi,
            ticks: a.ticks.clone(),
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (v - self.lo) / (self.hi - self.lo).max(f64::MIN_POSITIVE);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // The light grid between ticks is left out: one line per tick.
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// One line of a chart.
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// A named point drawn as a marker with its label (the knee, a failing step).
pub struct Mark {
    pub at: (f64, f64),
    pub text: String,
    pub color: RGBColor,
    /// Label under the marker (else above it).
    pub below: bool,
}

/// Everything a chart shows.
pub struct Chart<'a> {
    /// `data-chart` of the figure (what tests look for).
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub x_label: &'a dyn Fn(f64) -> String,
    pub y_label: &'a dyn Fn(f64) -> String,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub lines: Vec<Line>,
    /// Shaded spans of x, with their label (a drift rule's windows).
    pub bands: Vec<(f64, f64, &'a str)>,
    /// Horizontal rules (an SLO): y, label, color.
    pub rules: Vec<(f64, String, RGBColor)>,
    pub marks: Vec<Mark>,
    /// Draw a dot at every point (few points, or points that are steps).
    pub dots: bool,
    /// Long x labels (dates and run ids), written downwards.
    pub x_rotated: bool,
    /// Where the legend goes (where the lines usually are not).
    pub legend: SeriesLabelPosition,
}

const W: u32 = 560;
const H: u32 = 270;
/// Charts with their x labels written downwards are taller.
const H_ROTATED: u32 = 520;

/// The chart as a `<figure>` holding its SVG.
pub fn line_chart(c: &Chart<'_>) -> String {
    let mut svg = String::new();
    let h = if c.x_rotated { H_ROTATED } else { H };
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        draw(&root, c).expect("drawing into a string cannot fail");
        root.present().expect("drawing into a string cannot fail");
    }
    figure(&c.id, &c.title, &svg)
}

/// Wraps an SVG in the figure the pages and tests know.
pub fn figure(id: &str, title: &str, svg: &str) -> String {
    format!(
        r#"<figure class="chart" data-chart="{}" aria-label="{}">{}</figure>"#,
        html_escape::encode_double_quoted_attribute(id),
        html_escape::encode_double_quoted_attribute(title),
        // The page sizes the chart (its viewBox keeps the proportions).
        svg.replacen(&format!(r#"width="{W}" height="{H}""#), "", 1)
            .replacen(&format!(r#"width="{W}" height="{H_ROTATED}""#), "", 1)
    )
}

type Area<'b> = DrawingArea<SVGBackend<'b>, plotters::coord::Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Ctx<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, plotters::coord::cartesian::Cartesian2d<Ticked, Ticked>>;

/// The chart, phase by phase: axes, shaded bands, rules, lines, marks, legend.
fn draw(root: &Area<'_>, c: &Chart<'_>) -> Drawn {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(
            &c.title,
            ("sans-serif", 18).into_font().style(FontStyle::Bold),
        )
        .margin(10)
        .margin_right(28)
        .x_label_area_size(if c.x_rotated { 280 } else { 36 })
        .y_label_area_size(60)
        .build_cartesian_2d(Ticked::of(&c.x), Ticked::of(&c.y))?;
    let fx = |v: &f64| (c.x_label)(*v);
    let fy = |v: &f64| (c.y_label)(*v);
    // Rotated labels are drawn below (plotters centres every x label on
    // its tick, which would put half of a long rotated label in the plot).
    let none = |_: &f64| String::new();
    chart
        .configure_mesh()
        .label_style(("sans-serif", 15))
        .x_label_formatter(if c.x_rotated { &none } else { &fx })
        .y_label_formatter(&fy)
        .x_desc(c.x_desc)
        .y_desc(c.y_desc)
        .bold_line_style(RGBColor(0xe5, 0xe7, 0xeb))
        .axis_style(RGBColor(0x9c, 0xa3, 0xaf))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    if c.x_rotated {
        rotated_x_labels(root, &chart, c)?;
    }
    bands_and_rules(&mut chart, c)?;
    for l in &c.lines {
        let color = l.color;
        chart
            .draw_series(LineSeries::new(
                l.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(l.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        if c.dots || l.points.len() == 1 {
            chart.draw_series(l.points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
    }
    marks(root, &mut chart, c)?;
    if !c.lines.is_empty() {
        chart
            .configure_series_labels()
            .position(c.legend.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xd1, 0xd5, 0xdb))
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    Ok(())
}

/// Long x labels written downwards from their ticks.
fn rotated_x_labels(root: &Area<'_>, chart: &Ctx<'_, '_>, c: &Chart<'_>) -> Drawn {
    {
        for t in &c.x.ticks {
            let (px, py) = chart.backend_coord(&(*t, c.y.lo));
            root.draw(&Text::new(
                (c.x_label)(*t),
                (px, py + 8),
                ("sans-serif", 14)
                    .into_font()
                    .transform(FontTransform::Rotate90)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
    }
    Ok(())
}

/// A drift rule's windows shaded, and horizontal rules (an SLO) dashed.
fn bands_and_rules(chart: &mut Ctx<'_, '_>, c: &Chart<'_>) -> Drawn {
    for (from, to, label) in &c.bands {
        let (from, to) = (from.max(c.x.lo), to.min(c.x.hi));
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from, c.y.lo), (to, c.y.hi)],
            RGBColor(0xa7, 0x8b, 0xfa).mix(0.18).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            label.to_string(),
            (from, c.y.hi),
            ("sans-serif", 14)
                .into_font()
                .color(&RGBColor(0x6d, 0x28, 0xd9)),
        )))?;
    }
    for (y, label, color) in &c.rules {
        let color = *color;
        chart
            .draw_series(DashedLineSeries::new(
                [(c.x.lo, *y), (c.x.hi, *y)],
                6,
                4,
                color.stroke_width(2),
            ))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    Ok(())
}

/// Named points (the knee, a failing step), each labelled beside its marker.
fn marks(root: &Area<'_>, chart: &mut Ctx<'_, '_>, c: &Chart<'_>) -> Drawn {
    for m in &c.marks {
        chart.draw_series(std::iter::once(Circle::new(
            m.at,
            6,
            m.color.stroke_width(3),
        )))?;
        // The label sits just above its marker, towards the middle.
        let (px, py) = chart.backend_coord(&m.at);
        let h = if px > (W / 2) as i32 {
            HPos::Right
        } else {
            HPos::Left
        };
        let (dy, v) = if m.below {
            (12, VPos::Top)
        } else {
            (-10, VPos::Bottom)
        };
        root.draw(&Text::new(
            m.text.clone(),
            (px, py + dy),
            ("sans-serif", 15)
                .into_font()
                .style(FontStyle::Bold)
                .color(&m.color)
                .pos(Pos::new(h, v)),
        ))?;
    }
    Ok(())
}

/// A bar chart (a latency distribution): bars at x positions 0..n with
/// their labels, y a count axis.
pub struct Bars<'a> {
    pub id: String,
    pub title: String,
    pub labels: Vec<String>,
    pub values: Vec<f64>,
    pub y: Axis,
    pub y_label: &'a dyn Fn(f64) -> String,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
}

/// The bar chart as a `<figure>`.
pub fn bar_chart(b: &Bars<'_>) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        draw_bars(&root, b).expect("drawing into a string cannot fail");
        root.present().expect("drawing into a string cannot fail");
    }
    figure(&b.id, &b.title, &svg)
}

fn draw_bars(root: &Area<'_>, b: &Bars<'_>) -> Drawn {
    root.fill(&WHITE)?;
    let n = b.values.len().max(1);
    // A label every few bars, so they do not overlap.
    let every = n.div_ceil(6).max(1);
    let x = Ticked {
        lo: 0.0,
        hi: n as f64,
        ticks: (0..n).step_by(every).map(|i| i as f64 + 0.5).collect(),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(
            &b.title,
            ("sans-serif", 18).into_font().style(FontStyle::Bold),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x, Ticked::of(&b.y))?;
    let fx = |v: &f64| {
        b.labels
            .get(v.floor() as usize)
            .cloned()
            .unwrap_or_default()
    };
    let fy = |v: &f64| (b.y_label)(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_desc(b.x_desc)
        .y_desc(b.y_desc)
        .bold_line_style(RGBColor(0xe5, 0xe7, 0xeb))
        .axis_style(RGBColor(0x9c, 0xa3, 0xaf))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    chart.draw_series(b.values.iter().enumerate().map(|(i, v)| {
        Rectangle::new(
            [(i as f64 + 0.08, 0.0), (i as f64 + 0.92, *v)],
            COLORS[0].filled(),
        )
    }))?;
    Ok(())
}
