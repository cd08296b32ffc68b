//! Charts as SVG, drawn by plotters' SVG backend: a chart is axes (linear or
//! logarithmic), filled bands, lines (solid, dashed or dotted, optionally
//! with point marks) and a legend in a column right of the plot, where it
//! hides no data. What each figure shows is decided in
//! [`super::figures`]; this file only draws.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
pub use plotters::style::RGBColor;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width and height of every chart, in pixels.
pub const SIZE: (u32, u32) = (800, 400);
/// Width of the legend column right of the plot.
const LEGEND_W: u32 = 240;

/// The most points drawn of one line or band edge: about two a pixel of
/// the plot's width. Longer series are thinned to the lowest and highest
/// point of each stretch, so peaks and dips stay visible and the page does
/// not grow with the report.
pub const MAX_POINTS: usize = 1_200;

/// `points` thinned to at most [`MAX_POINTS`]: per stretch of consecutive
/// points, the lowest and the highest, in their order.
pub fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let stretch = points.len().div_ceil(MAX_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_POINTS);
    for chunk in points.chunks(stretch) {
        let lo = chunk.iter().enumerate().min_by(|a, b| a.1.1.total_cmp(&b.1.1));
        let hi = chunk.iter().enumerate().max_by(|a, b| a.1.1.total_cmp(&b.1.1));
        if let (Some((i, &l)), Some((j, &h))) = (lo, hi) {
            match i.cmp(&j) {
                std::cmp::Ordering::Less => out.extend([l, h]),
                std::cmp::Ordering::Greater => out.extend([h, l]),
                std::cmp::Ordering::Equal => out.push(l),
            }
        }
    }
    out
}

const FONT: &str = "sans-serif";

/// The colours of runs (and of series when there is one run), in order:
/// Tableau 10, readable on white and distinct for most colour blindness.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0xBA, 0xB0, 0xAC),
    RGBColor(0xE1, 0x57, 0x59),
];

/// Red, for limits.
pub const LIMIT: RGBColor = RGBColor(0xD6, 0x27, 0x28);
/// Dark grey, for references (targets, predictions of a single run).
pub const REFERENCE: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// How a line is stroked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    /// Continuous.
    Solid,
    /// Long dashes.
    Dashed,
    /// Short dots.
    Dotted,
}

impl Dash {
    /// The n-th style: solid, dashed, dotted, solid, ...
    pub fn nth(n: usize) -> Dash {
        [Dash::Solid, Dash::Dashed, Dash::Dotted][n % 3]
    }
}

/// A line through points.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its legend entry, if any.
    pub label: Option<String>,
    /// Colour.
    pub color: RGBColor,
    /// Stroke.
    pub dash: Dash,
    /// Width in pixels.
    pub width: u32,
    /// Data points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Draw a dot on every point too.
    pub marks: bool,
    /// Measured on the chart's right axis ([`Chart::y2`]).
    pub right: bool,
}

impl Line {
    /// A solid line of width 2 without marks.
    pub fn new(label: impl Into<Option<String>>, color: RGBColor, points: Vec<(f64, f64)>) -> Line {
        Line { label: label.into(), color, dash: Dash::Solid, width: 2, points, marks: false, right: false }
    }

    /// The same with another stroke.
    pub fn dash(mut self, dash: Dash) -> Line {
        self.dash = dash;
        self
    }

    /// The same with dots on the points.
    pub fn marks(mut self) -> Line {
        self.marks = true;
        self
    }

    /// The same measured on the right axis.
    pub fn right(mut self) -> Line {
        self.right = true;
        self
    }
}

/// The area between two lines (or a line and y = 0), filled.
#[derive(Debug, Clone)]
pub struct Band {
    /// Its legend entry.
    pub label: String,
    /// Colour of the border and of the fill.
    pub color: RGBColor,
    /// Opacity of the fill.
    pub opacity: f64,
    /// The upper edge, by increasing x.
    pub points: Vec<(f64, f64)>,
    /// The lower edge at the same x; empty for y = 0.
    pub lower: Vec<(f64, f64)>,
}

impl Band {
    /// The outline of the filled area: the upper edge, then the lower one
    /// backwards.
    fn outline(&self) -> Vec<(f64, f64)> {
        let mut v = thin(&self.points);
        if self.lower.is_empty() {
            let (first, last) = (self.points.first(), self.points.last());
            if let (Some(a), Some(b)) = (first, last) {
                v.push((b.0, 0.0));
                v.push((a.0, 0.0));
            }
        } else {
            v.extend(thin(&self.lower).iter().rev());
        }
        v
    }
}

/// One axis.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Its description (with the unit).
    pub desc: String,
    /// Low and high end.
    pub range: (f64, f64),
    /// Logarithmic (base 10).
    pub log: bool,
    /// Formats a tick's value.
    pub fmt: fn(f64) -> String,
}

impl Axis {
    /// A linear axis.
    pub fn linear(desc: &str, range: (f64, f64), fmt: fn(f64) -> String) -> Axis {
        let hi = if range.1 > range.0 { range.1 } else { range.0 + 1.0 };
        Axis { desc: desc.into(), range: (range.0, hi), log: false, fmt }
    }

    /// A logarithmic axis.
    pub fn log(desc: &str, range: (f64, f64), fmt: fn(f64) -> String) -> Axis {
        let lo = range.0.max(f64::MIN_POSITIVE);
        let hi = if range.1 > lo { range.1 } else { lo * 10.0 };
        Axis { desc: desc.into(), range: (lo, hi), log: true, fmt }
    }
}

/// A chart: axes, then bands, then lines, then the legend.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// A second vertical axis on the right, linear, for the lines marked
    /// [`Line::right`] (a quantity with a scale of its own); the left one
    /// must then be linear too.
    pub y2: Option<Axis>,
    /// Filled areas, drawn first in order.
    pub bands: Vec<Band>,
    /// Lines, drawn over the bands in order.
    pub lines: Vec<Line>,
    /// Remarks on what is drawn, shown under the chart (not drawn).
    pub notes: Vec<String>,
    /// Drawn in the middle of the plot when there is nothing else.
    pub placeholder: Option<String>,
    /// What is drawn, in words (shown under the chart, not drawn).
    pub caption: String,
}

impl Chart {
    /// A chart with these axes and nothing drawn yet.
    pub fn new(x: Axis, y: Axis) -> Chart {
        Chart {
            x,
            y,
            y2: None,
            bands: Vec::new(),
            lines: Vec::new(),
            notes: Vec::new(),
            placeholder: None,
            caption: String::new(),
        }
    }
}

/// The chart as an `<svg>` element.
pub fn render(c: &Chart) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).context("drawing the background")?;
        let (x, y) = (c.x.range.0..c.x.range.1, c.y.range.0..c.y.range.1);
        match (c.x.log, c.y.log) {
            (false, false) => draw(&root, c, x, y)?,
            (true, false) => draw(&root, c, x.log_scale(), y)?,
            (false, true) => draw(&root, c, x, y.log_scale())?,
            (true, true) => draw(&root, c, x.log_scale(), y.log_scale())?,
        }
        root.present().context("finishing the SVG")?;
    }
    Ok(svg)
}

fn draw<X, Y>(root: &DrawingArea<SVGBackend<'_>, Shift>, c: &Chart, x: X, y: Y) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let (left, right) = root.split_horizontally(SIZE.0 - LEGEND_W);
    let mut builder = ChartBuilder::on(&left);
    builder.margin(14).x_label_area_size(48).y_label_area_size(88);
    if c.y2.is_some() {
        builder.right_y_label_area_size(88);
    }
    let chart = builder.build_cartesian_2d(x, y).context("building the chart")?;
    match &c.y2 {
        // The right axis first: it takes the right label area, so that the
        // left axis's ticks are not drawn there too.
        Some(y2) => {
            let (xr, yr) = (c.x.range.0..c.x.range.1, y2.range.0..y2.range.1);
            let fmt = y2.fmt;
            let mut dual = chart.set_secondary_coord(xr, yr);
            dual.configure_secondary_axes()
                .y_desc(y2.desc.as_str())
                .y_labels(7)
                .y_label_formatter(&|v: &f64| fmt(*v))
                .label_style((FONT, 16))
                .axis_desc_style((FONT, 18))
                .draw()
                .context("drawing the right axis")?;
            body(&mut dual, c, &left)?;
        }
        None => {
            let mut chart = chart;
            body(&mut chart, c, &left)?;
        }
    }
    legend(&right, c)
}

/// The axes, bands, lines and placeholder of a chart on the left axis.
fn body<XC, YC>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<XC, YC>>,
    c: &Chart,
    left: &DrawingArea<SVGBackend<'_>, Shift>,
) -> anyhow::Result<()>
where
    XC: Ranged<ValueType = f64> + ValueFormatter<f64>,
    YC: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let (xfmt, yfmt) = (c.x.fmt, c.y.fmt);
    chart
        .configure_mesh()
        .x_desc(c.x.desc.as_str())
        .y_desc(c.y.desc.as_str())
        .x_labels(8)
        .y_labels(7)
        .x_label_formatter(&|v: &f64| xfmt(*v))
        .y_label_formatter(&|v: &f64| yfmt(*v))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .bold_line_style(RGBColor(0xE4, 0xE4, 0xE4))
        .light_line_style(RGBColor(0xF4, 0xF4, 0xF4))
        .draw()
        .context("drawing the axes")?;
    for b in &c.bands {
        chart
            .draw_series(std::iter::once(Polygon::new(b.outline(), b.color.mix(b.opacity).filled())))
            .context("drawing a band")?;
        chart.draw_series(LineSeries::new(thin(&b.points), b.color.stroke_width(1))).context("drawing a band")?;
    }
    for l in &c.lines {
        let style = l.color.stroke_width(l.width);
        let points = match (&c.y2, l.right) {
            (Some(y2), true) => thin(&l.points).into_iter().map(|(x, v)| (x, to_left(v, y2, &c.y))).collect(),
            _ => thin(&l.points),
        };
        let pts = points.iter().copied();
        match l.dash {
            Dash::Solid => chart.draw_series(LineSeries::new(pts, style)),
            Dash::Dashed => chart.draw_series(DashedLineSeries::new(pts, 9, 6, style)),
            Dash::Dotted => chart.draw_series(DashedLineSeries::new(pts, 2, 4, style)),
        }
        .context("drawing a line")?;
        if l.marks {
            let color = l.color;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).context("drawing points")?;
        }
    }
    if let Some(text) = &c.placeholder {
        let (px, py) = chart.plotting_area().get_pixel_range();
        let style = (FONT, 18).into_font().color(&RGBColor(0x66, 0x66, 0x66)).pos(Pos::new(HPos::Center, VPos::Center));
        let at = ((px.start + px.end) / 2, (py.start + py.end) / 2);
        left.draw(&Text::new(text.clone(), at, style)).context("drawing the placeholder")?;
    }
    Ok(())
}

/// A value of the right axis `y2` at the same height on the (linear) left
/// axis `y`: lines on the right axis are drawn in the left one's
/// coordinates.
fn to_left(v: f64, y2: &Axis, y: &Axis) -> f64 {
    let span2 = (y2.range.1 - y2.range.0).max(f64::MIN_POSITIVE);
    y.range.0 + (v - y2.range.0) / span2 * (y.range.1 - y.range.0)
}

/// The legend, one entry a row in the column right of the plot: a swatch
/// of the band or line (stroke and marks as drawn), then its label.
fn legend(area: &DrawingArea<SVGBackend<'_>, Shift>, c: &Chart) -> anyhow::Result<()> {
    const ROW: i32 = 21;
    let bands = c.bands.iter().map(|b| (b.label.as_str(), Swatch::Band(b.color, b.opacity)));
    let lines = c.lines.iter().filter_map(|l| l.label.as_deref().map(|t| (t, Swatch::Line(l))));
    let entries: Vec<(&str, Swatch<'_>)> = bands.chain(lines).collect();
    let rows = ((SIZE.1 as i32 - 2 * ROW) / ROW).max(1) as usize;
    let font = (FONT, 16).into_font().color(&RGBColor(0x22, 0x22, 0x22)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (label, swatch)) in entries.iter().enumerate() {
        let y = 24 + ROW * i as i32;
        if i + 1 == rows && entries.len() > rows {
            let more = format!("and {} more", entries.len() - i);
            area.draw(&Text::new(more, (34, y), font.clone())).context("drawing the legend")?;
            break;
        }
        let seg = |a: i32, b: i32, style: ShapeStyle| PathElement::new(vec![(6 + a, y), (6 + b, y)], style);
        match swatch {
            Swatch::Band(color, opacity) => {
                area.draw(&Rectangle::new([(6, y - 7), (28, y + 7)], color.mix(opacity.max(0.3)).filled()))
            }
            Swatch::Line(l) => {
                let style = l.color.stroke_width(l.width);
                let segs: &[(i32, i32)] = match l.dash {
                    Dash::Solid => &[(0, 22)],
                    Dash::Dashed => &[(0, 9), (13, 22)],
                    Dash::Dotted => &[(0, 2), (6, 8), (12, 14), (18, 20)],
                };
                segs.iter()
                    .try_for_each(|&(a, b)| area.draw(&seg(a, b, style)))
                    .and_then(|()| if l.marks { area.draw(&Circle::new((17, y), 4, l.color.filled())) } else { Ok(()) })
            }
        }
        .context("drawing the legend")?;
        area.draw(&Text::new(label.to_string(), (34, y), font.clone())).context("drawing the legend")?;
    }
    Ok(())
}

enum Swatch<'a> {
    Band(RGBColor, f64),
    Line(&'a Line),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(v: f64) -> String {
        format!("{v}")
    }

    #[test]
    fn long_series_are_thinned_keeping_peaks() {
        let pts: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, if i == 54_321 { 1e6 } else { 1.0 })).collect();
        let t = thin(&pts);
        assert!(t.len() <= MAX_POINTS, "{}", t.len());
        assert!(t.contains(&(54_321.0, 1e6)), "the peak stays");
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        let short = [(0.0, 1.0), (1.0, 2.0)];
        assert_eq!(thin(&short), short);
    }

    #[test]
    fn a_chart_is_one_svg_with_its_axes_and_series() {
        let mut c = Chart::new(Axis::linear("seconds", (0.0, 10.0), plain), Axis::log("count", (1.0, 1e4), plain));
        c.lines.push(Line::new(Some("held".to_string()), PALETTE[0], vec![(0.0, 1.0), (10.0, 1e3)]).marks());
        c.lines.push(Line::new(None, PALETTE[1], vec![(0.0, 2.0), (10.0, 2.0)]).dash(Dash::Dashed));
        c.placeholder = Some("a <note> & more".into());
        let svg = render(&c).expect("render");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.contains(">\nseconds\n</text>") || svg.contains("seconds"));
        assert!(svg.contains("held"));
        assert!(svg.contains("a &lt;note&gt; &amp; more"));
        assert!(svg.contains("<circle"), "marks are drawn");
    }
}
