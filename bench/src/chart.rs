//! One latency chart per payload: percentiles p50 … p99.99 across, milliseconds up (log scale),
//! one line per server, allowed reviews at the headline concurrency over each server's headline
//! protocol.
//!
//! plotters is built without its `ttf` feature: its SVG backend then writes text as `<text>`
//! elements, sized by an estimate, and the viewer picks the font. No system font is needed.

use plotters::prelude::*;

use crate::{
    load::Percentiles,
    plan::{HEADLINE_CONCURRENCY, PayloadKind, Verdict, headline_protocol},
    servers::ServerKind,
    summary::Row,
};

const SIZE: (u32, u32) = (900, 540);

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub server: ServerKind,
    pub label: String,
    /// Milliseconds at [`Percentiles::LABELS`].
    pub points: [f64; 5],
}

/// The lines for `payload`'s chart, from the measured rows.
pub fn series(rows: &[Row], payload: PayloadKind) -> Vec<Series> {
    ServerKind::ALL
        .iter()
        .filter_map(|&server| {
            let protocol = headline_protocol(server);
            let row = rows.iter().find(|row| {
                row.server == server
                    && row.payload == payload
                    && row.verdict == Verdict::Allowed
                    && row.concurrency == HEADLINE_CONCURRENCY
                    && row.protocol == protocol
            })?;
            Some(Series {
                server,
                label: format!("{} ({})", server.name(), protocol.label()),
                points: row.percentiles()?,
            })
        })
        .collect()
}

pub fn title(payload: PayloadKind) -> String {
    format!(
        "{}: latency, allowed, concurrency {HEADLINE_CONCURRENCY}",
        payload.title()
    )
}

/// The chart as SVG; `None` if there is nothing to draw.
pub fn render(title: &str, series: &[Series]) -> Option<Result<String, String>> {
    let all = series.iter().flat_map(|s| s.points).filter(|v| *v > 0.0);
    let (low, high) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return None;
    }
    let mut svg = String::new();
    // Headroom above the slowest line keeps the legend, top left, off the data.
    let drawn = draw(&mut svg, title, series, (low / 1.5, high * 8.0)).map_err(|e| e.to_string());
    Some(drawn.map(|()| svg))
}

fn draw(
    svg: &mut String,
    title: &str,
    series: &[Series],
    (low, high): (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let last = Percentiles::LABELS.len() - 1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2f64..last as f64 + 0.2, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(Percentiles::LABELS.len())
        .x_label_formatter(&|x| {
            let index = x.round();
            let label = Percentiles::LABELS
                .get(index as usize)
                .copied()
                .unwrap_or("");
            if (x - index).abs() < 1e-6 {
                label.to_owned()
            } else {
                String::new()
            }
        })
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|ms| format!("{ms}"))
        .draw()?;
    for line in series {
        let color = color(line.server);
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .enumerate()
            .map(|(i, &ms)| (i as f64, ms))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(&line.label)
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

/// The same color for a server in every chart.
fn color(server: ServerKind) -> RGBColor {
    match server {
        ServerKind::ValidatorWebhook => RGBColor(0xd6, 0x27, 0x28),
        ServerKind::Ceiling => RGBColor(0x7f, 0x7f, 0x7f),
        ServerKind::ControllerRuntime => RGBColor(0x1f, 0x77, 0xb4),
        ServerKind::Flask => RGBColor(0x2c, 0xa0, 0x2c),
        ServerKind::Gunicorn => RGBColor(0xff, 0x7f, 0x0e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headline::tests::rows;

    #[test]
    fn one_line_per_server_that_has_the_cell() {
        let series = series(&rows(), PayloadKind::Deployment);
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "validator-webhook (h2)",
                "ceiling (h2)",
                "controller-runtime (h2)",
                "flask (h1)"
            ]
        );
        assert!(super::series(&rows(), PayloadKind::Large).is_empty());
    }

    #[test]
    fn draws_every_line_with_its_label_and_the_percentile_axis() {
        let svg = render("t", &series(&rows(), PayloadKind::Deployment))
            .unwrap()
            .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in [
            "validator-webhook (h2)",
            "flask (h1)",
            "p50",
            "p99.99",
            "latency (ms, log scale)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Each server's line and its legend mark, in the server's color; none for gunicorn.
        let strokes = |server| {
            let RGBColor(r, g, b) = color(server);
            svg.matches(&format!("stroke=\"#{r:02X}{g:02X}{b:02X}\""))
                .count()
        };
        assert_eq!(strokes(ServerKind::ValidatorWebhook), 2);
        assert_eq!(strokes(ServerKind::Flask), 2);
        assert_eq!(strokes(ServerKind::Gunicorn), 0);
    }

    #[test]
    fn nothing_to_draw_is_no_chart() {
        assert!(render("t", &[]).is_none());
    }
}
