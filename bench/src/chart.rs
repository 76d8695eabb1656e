//! One latency chart per payload: percentiles p50 … p99.99 across, milliseconds up (log scale),
//! one line per server, allowed reviews at the headline concurrency over each server's headline
//! protocol. plotters is built without `ttf`: text is written as SVG `<text>`, so no system
//! font is needed.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::{
    load::PERCENTILES,
    plan::{HEADLINE_CONCURRENCY, PayloadKind, ServerKind, Verdict},
    row::Row,
};

pub fn title(payload: PayloadKind) -> String {
    format!(
        "{}: latency, allowed, concurrency {HEADLINE_CONCURRENCY}",
        payload.title()
    )
}

/// The chart of `payload` as SVG; `None` if no server has its cell.
pub fn render(rows: &[Row], payload: PayloadKind) -> Result<Option<String>> {
    let lines: Vec<(ServerKind, String, [f64; 5])> = ServerKind::ALL
        .iter()
        .filter_map(|&server| {
            let row = rows.iter().find(|row| {
                (
                    row.server,
                    row.payload,
                    row.verdict,
                    row.concurrency,
                    row.protocol,
                ) == (
                    server,
                    payload,
                    Verdict::Allowed,
                    HEADLINE_CONCURRENCY,
                    server.headline_protocol(),
                )
            })?;
            let points = [
                row.p50_ms?,
                row.p90_ms?,
                row.p99_ms?,
                row.p999_ms?,
                row.p9999_ms?,
            ];
            Some((
                server,
                format!("{} ({})", server.name(), row.protocol.label()),
                points,
            ))
        })
        .collect();
    let values = lines
        .iter()
        .flat_map(|(_, _, points)| *points)
        .filter(|&v| v > 0.0);
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return Ok(None);
    }
    let mut svg = String::new();
    // Headroom above the slowest line keeps the legend, top left, off the data.
    draw(&mut svg, &title(payload), &lines, (low / 1.5, high * 8.0))
        .map_err(|e| anyhow!("cannot draw the chart: {e}"))?;
    Ok(Some(svg))
}

fn draw(
    svg: &mut String,
    title: &str,
    lines: &[(ServerKind, String, [f64; 5])],
    (low, high): (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2f64..4.2, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(PERCENTILES.len())
        .x_label_formatter(&|x| {
            let on_a_point = (x - x.round()).abs() < 1e-6;
            let label = PERCENTILES.get(x.round() as usize).filter(|_| on_a_point);
            label.copied().unwrap_or_default().to_owned()
        })
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|ms| format!("{ms}"))
        .draw()?;
    for (server, label, points) in lines {
        // The same color for a server in every chart.
        let color = match server {
            ServerKind::ValidatorWebhook => RGBColor(0xd6, 0x27, 0x28),
            ServerKind::Ceiling => RGBColor(0x7f, 0x7f, 0x7f),
            ServerKind::ControllerRuntime => RGBColor(0x1f, 0x77, 0xb4),
            ServerKind::Flask => RGBColor(0x2c, 0xa0, 0x2c),
            ServerKind::Gunicorn => RGBColor(0xff, 0x7f, 0x0e),
        };
        let points: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .map(|(i, &ms)| (i as f64, ms))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headline::tests::rows;

    #[test]
    fn draws_a_line_per_server_that_has_the_cell_with_the_percentile_axis() {
        let svg = render(&rows(), PayloadKind::Deployment).unwrap().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in [
            "validator-webhook (h2)",
            "ceiling (h2)",
            "controller-runtime (h2)",
            "flask (h1)",
            "p50",
            "p99.99",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(!svg.contains("gunicorn"));
        assert_eq!(render(&rows(), PayloadKind::Large).unwrap(), None);
    }
}
