//! Line plots shared by the report's sections: one line per target, each in its own colour,
//! with a legend.

use plotters::prelude::*;

/// A named line: its label and its points.
pub(crate) type Line<X, Y> = (String, Vec<(X, Y)>);

/// One line per target, each in its own colour, with a legend.
pub(crate) fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: Vec<Line<X::ValueType, Y::ValueType>>,
    legend_at: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    X: Ranged,
    Y: Ranged,
    X::ValueType: Clone + 'static,
    Y::ValueType: Clone + 'static,
{
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend_at)
        .draw()?;
    Ok(())
}
