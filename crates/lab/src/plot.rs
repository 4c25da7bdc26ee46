//! Line plots shared by the report's sections: one line per target, each in its own colour,
//! with the legend in a column of its own beside the plot.
//!
//! The legend never sits on the plot: inside it, a dozen targets' names covered the very lines
//! a reader looks for (the churn latencies, the waits over time). And the colours are a fixed
//! qualitative palette in which no two are near (a generated palette gave the twelve churn
//! targets three pinks nobody could tell apart); past its ten colours lines are dashed.

use plotters::coord::Shift;
use plotters::prelude::*;

/// A named line: its label and its points.
pub(crate) type Line<X, Y> = (String, Vec<(X, Y)>);

/// Width of the legend column beside a plot.
pub(crate) const LEGEND_WIDTH: u32 = 230;

/// Ten colours told apart at a glance (Tableau's 10, whose one pink is the only pink).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The look of the `i`-th line: its colour, and whether it is dashed (after the first ten).
pub(crate) fn style(i: usize) -> (RGBColor, bool) {
    (PALETTE[i % PALETTE.len()], i >= PALETTE.len())
}

/// A drawing area split into the plot (left) and its legend column (right).
pub(crate) fn with_legend<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
) -> (
    DrawingArea<SVGBackend<'a>, Shift>,
    DrawingArea<SVGBackend<'a>, Shift>,
) {
    let (w, _) = root.dim_in_pixel();
    root.split_horizontally(w.saturating_sub(LEGEND_WIDTH))
}

/// One line per target, the `i`-th in [`style`]`(i)`. Returns the names, for [`legend`].
pub(crate) fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: Vec<Line<X::ValueType, Y::ValueType>>,
) -> anyhow::Result<Vec<String>>
where
    X: Ranged,
    Y: Ranged,
    X::ValueType: Clone + 'static,
    Y::ValueType: Clone + 'static,
{
    let mut names = Vec::with_capacity(series.len());
    for (i, (name, points)) in series.into_iter().enumerate() {
        let (color, dashed) = style(i);
        let stroke = color.stroke_width(2);
        if dashed {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, stroke))?;
        } else {
            chart.draw_series(LineSeries::new(points, stroke))?;
        }
        names.push(name);
    }
    Ok(names)
}

/// The legend column: each name beside a sample of its line.
pub(crate) fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    names: &[String],
) -> anyhow::Result<()> {
    let font = ("sans-serif", 13).into_font();
    for (i, name) in names.iter().enumerate() {
        let y = 40 + 20 * i as i32;
        let (color, dashed) = style(i);
        let stroke = color.stroke_width(2);
        if dashed {
            area.draw(&PathElement::new(vec![(4, y), (10, y)], stroke))?;
            area.draw(&PathElement::new(vec![(16, y), (22, y)], stroke))?;
        } else {
            area.draw(&PathElement::new(vec![(4, y), (22, y)], stroke))?;
        }
        area.draw(&Text::new(name.clone(), (28, y - 7), font.clone()))?;
    }
    Ok(())
}

/// In a panel with nothing to plot, say why instead of drawing empty axes.
pub(crate) fn nothing_to_show(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    why: &str,
) -> anyhow::Result<()> {
    area.draw(&Text::new(
        title.to_string(),
        (10, 10),
        ("sans-serif", 16).into_font(),
    ))?;
    area.draw(&Text::new(
        why.to_string(),
        (10, 40),
        ("sans-serif", 13).into_font(),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ten_lines_differ_in_colour_and_the_rest_in_dashes() {
        let styles: Vec<_> = (0..12).map(style).collect();
        for i in 0..10 {
            for j in 0..i {
                let (a, b) = (styles[i].0, styles[j].0);
                let dist = (a.0 as i32 - b.0 as i32).abs()
                    + (a.1 as i32 - b.1 as i32).abs()
                    + (a.2 as i32 - b.2 as i32).abs();
                assert!(dist > 60, "colours {i} and {j} are too close");
            }
        }
        assert!(styles[..10].iter().all(|s| !s.1) && styles[10..].iter().all(|s| s.1));
    }
}
