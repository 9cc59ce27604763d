//! `--plot`: latency and throughput over the run, as an SVG with two panels.

use std::path::Path;

use plotters::prelude::*;

use super::report::TimelinePoint;

pub fn write_svg(path: &Path, title: &str, points: &[TimelinePoint]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 18))
        .map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(290);
    let t_max = points.iter().map(|p| p.t_s).fold(1.0, f64::max);

    let lat_max = points.iter().map(|p| p.latency_p99_ms).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..lat_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (label, color, f) in [
        (
            "p50",
            BLUE,
            (|p: &TimelinePoint| p.latency_p50_ms) as fn(&TimelinePoint) -> f64,
        ),
        ("p99", RED, |p: &TimelinePoint| p.latency_p99_ms),
    ] {
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.t_s, f(p))), color))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;

    let kbps_max = points.iter().map(|p| p.recv_kbps).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..kbps_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("received kbit/s (all streams)")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.t_s, p.recv_kbps)),
            GREEN,
        ))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let points: Vec<_> = (0..10)
            .map(|i| TimelinePoint {
                t_s: i as f64,
                recv_packets_per_s: 100.0,
                recv_kbps: 500.0 + i as f64,
                latency_p50_ms: 1.0,
                latency_p99_ms: 3.0,
            })
            .collect();
        write_svg(&path, "test run", &points).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("latency (ms)"));
        assert!(svg.contains("polyline"));
    }
}
