//! `--chart FILE`: instances against load over the demo, as an SVG file. Ready and desired
//! instances are steps on the left axis, requests per second a line on the right one, so the
//! autoscaler's reaction reads at a glance: how far the instances lag the load, and by how much
//! they overshoot it. `ebb sim` (a later issue) is meant to draw its runs with the same function.

use plotters::prelude::*;
use std::path::Path;

/// One second of the demo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the wave began.
    pub at_s: f64,
    /// Instances ready.
    pub ready: u32,
    /// Instances wanted.
    pub desired: u32,
    /// Requests per second at the load balancer.
    pub rps: f64,
}

/// The chart's size in pixels: a laptop screen's half, readable when pasted into an issue.
const SIZE: (u32, u32) = (960, 480);

/// Checks, before anything runs, that `path` names an SVG file in a folder that exists.
pub fn check_path(path: &Path) -> Result<(), String> {
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if !svg {
        return Err(format!(
            "--chart {}: the chart is written as SVG; name a .svg file (a browser opens it; `rsvg-convert` makes a PNG)",
            path.display()
        ));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "--chart {}: no folder {}",
            path.display(),
            folder.display()
        ));
    }
    // Made now, so that a folder ebb cannot write to says so before the demo, not after it.
    std::fs::File::create(path)
        .map(drop)
        .map_err(|e| format!("--chart {}: {e}", path.display()))
}

/// Writes the chart of `points` to `path` (SVG), titled `title`.
pub fn write_svg(path: &Path, title: &str, points: &[Point]) -> Result<(), String> {
    // A point with a figure that is not a number is left out: plotters cannot scale to it.
    let points: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.at_s.is_finite() && p.rps.is_finite())
        .collect();
    let points = points.as_slice();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw(&root, title, points).map_err(|e| format!("drawing {}: {e}", path.display()))?;
    root.present()
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(root: &Area, title: &str, points: &[Point]) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (end, most, peak) = bounds(points);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..most)?
        .set_secondary_coord(0.0..end, 0.0..peak);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("instances")
        .x_label_formatter(&|s| format!("{s:.0}"))
        .y_label_formatter(&|n| format!("{n:.0}"))
        .light_line_style(WHITE)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("requests per second")
        .y_label_formatter(&|r| format!("{r:.0}"))
        .draw()?;
    let blue = RGBColor(66, 99, 235);
    let grey = RGBColor(150, 150, 150);
    let orange = RGBColor(232, 89, 12);
    chart
        .draw_series(LineSeries::new(
            steps(points, |p| p.desired),
            grey.stroke_width(1),
        ))?
        .label("desired instances")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
    chart
        .draw_series(LineSeries::new(
            steps(points, |p| p.ready),
            blue.stroke_width(2),
        ))?
        .label("ready instances")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            points.iter().map(|p| (p.at_s, p.rps)),
            orange.stroke_width(1),
        ))?
        .label("requests per second (right)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], orange));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// The axes' ends: the last second, the most instances and the highest rate (never zero, so
/// that an empty run still draws).
fn bounds(points: &[Point]) -> (f64, f64, f64) {
    let end = points.iter().map(|p| p.at_s).fold(1.0, f64::max);
    let most = points
        .iter()
        .map(|p| p.ready.max(p.desired))
        .max()
        .unwrap_or(0)
        .max(1);
    let peak = points.iter().map(|p| p.rps).fold(1.0, f64::max);
    (end, f64::from(most) + 1.0, peak * 1.1)
}

/// A count as steps: it holds its value until the next second says otherwise.
fn steps(points: &[Point], count: impl Fn(&Point) -> u32) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push((p.at_s, f64::from(count(&points[i - 1]))));
        }
        out.push((p.at_s, f64::from(count(p))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_s: f64, ready: u32, rps: f64) -> Point {
        Point {
            at_s,
            ready,
            desired: ready + 1,
            rps,
        }
    }

    #[test]
    fn the_svg_holds_every_series_and_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wave.svg");
        let points: Vec<Point> = (0..60)
            .map(|s| point(f64::from(s), s / 10, f64::from(s) * 10.0))
            .collect();
        write_svg(&path, "a wave", &points).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "a wave",
            "ready instances",
            "desired instances",
            "requests per second",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 3, "three lines");
    }

    #[test]
    fn counts_are_drawn_as_steps() {
        let points = [point(0.0, 1, 0.0), point(1.0, 3, 0.0)];
        assert_eq!(
            steps(&points, |p| p.ready),
            [(0.0, 1.0), (1.0, 1.0), (1.0, 3.0)]
        );
    }

    #[test]
    fn an_empty_run_still_draws_and_a_wrong_name_is_refused_first() {
        let dir = tempfile::tempdir().unwrap();
        write_svg(&dir.path().join("empty.svg"), "nothing", &[]).unwrap();
        assert!(check_path(Path::new("chart.png"))
            .unwrap_err()
            .contains("SVG"));
        assert!(check_path(Path::new("/no/such/folder/chart.svg"))
            .unwrap_err()
            .contains("no folder"));
        assert!(check_path(&dir.path().join("ok.SVG")).is_ok());
        let folder = dir.path().join("a-folder.svg");
        std::fs::create_dir(&folder).unwrap();
        assert!(
            check_path(&folder).is_err(),
            "a folder is not a file to write"
        );
        let odd = [
            point(0.0, 1, f64::INFINITY),
            point(f64::NAN, 1, 1.0),
            point(1.0, 2, 5.0),
        ];
        write_svg(&dir.path().join("odd.svg"), "odd", &odd).unwrap();
    }
}
