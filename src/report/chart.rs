//! The report's chart: failed logins per hour (per day for windows over two days), a PNG bar
//! chart drawn with plotters, with axes, hour labels in the local zone, a value scale and the
//! peak labelled.
//!
//! Its text is drawn with DejaVu Sans Condensed, compiled in through the `dejavu` crate and
//! rasterised by plotters' `ab_glyph` backend: a server has no fonts to count on (a minimal
//! Debian has none), and fontconfig would be one more system library to match. The font's
//! licence (Bitstream Vera, with DejaVu's changes in the public domain) lets it be embedded
//! and redistributed with its notice, which the package's copyright file carries.

use std::sync::Once;

use chrono::{Datelike, Local, TimeZone};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::render::{hour_label, hours_need_day};
use super::summary::Summary;

/// Width and height of the chart, pixels.
pub const SIZE: (u32, u32) = (720, 280);

/// The font family name the chart's text asks plotters for.
const FONT: &str = "sans-serif";

/// Bars in one chart at most: longer windows are drawn per day.
const MAX_HOURLY: usize = 48;

/// Bar colour.
const BAR: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);

/// One bar of the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Start, seconds since the epoch.
    pub ts: i64,
    /// Failed logins in it.
    pub count: u64,
    /// Its label under the bar: `08` (an hour) or `11-22` (a day).
    pub label_short: String,
    /// Its name in sentences: `08:00-09:00`, or `2026-11-22`.
    pub label_long: String,
    /// Whether it is a day (the window is longer than two days).
    pub daily: bool,
}

/// The window's hours as bars, or its days (local midnight to midnight) when it is longer
/// than two days.
pub fn buckets(s: &Summary) -> Vec<Bucket> {
    let with_day = hours_need_day(s);
    if s.per_hour.len() <= MAX_HOURLY {
        return s
            .per_hour
            .iter()
            .map(|h| Bucket {
                ts: h.ts,
                count: h.count,
                label_short: Local
                    .timestamp_opt(h.ts, 0)
                    .earliest()
                    .map_or(String::new(), |t| t.format("%H").to_string()),
                label_long: hour_label(h.ts, with_day),
                daily: false,
            })
            .collect();
    }
    let mut out: Vec<Bucket> = Vec::new();
    for h in &s.per_hour {
        let Some(t) = Local.timestamp_opt(h.ts, 0).earliest() else {
            continue;
        };
        let day = (t.year(), t.ordinal());
        match out.last_mut() {
            Some(b)
                if Local
                    .timestamp_opt(b.ts, 0)
                    .earliest()
                    .is_some_and(|d| (d.year(), d.ordinal()) == day) =>
            {
                b.count += h.count
            }
            _ => out.push(Bucket {
                ts: h.ts,
                count: h.count,
                label_short: t.format("%m-%d").to_string(),
                label_long: t.format("%Y-%m-%d").to_string(),
                daily: true,
            }),
        }
    }
    out
}

/// What the chart shows, in words: its alt text, read where images are blocked.
pub fn alt_text(s: &Summary) -> String {
    let b = buckets(s);
    let unit = if b.first().is_some_and(|b| b.daily) {
        "day"
    } else {
        "hour"
    };
    let total: u64 = b.iter().map(|b| b.count).sum();
    match b
        .iter()
        .max_by(|x, y| x.count.cmp(&y.count).then(y.ts.cmp(&x.ts)))
    {
        Some(peak) if peak.count > 0 => format!(
            "Chart of failed logins per {unit}: {total} in all, peak {} at {}",
            peak.count, peak.label_long
        ),
        _ => format!("Chart of failed logins per {unit}: none"),
    }
}

/// A round step at or above `v`: 1, 2 or 5 times a power of ten.
fn nice_step(v: u64) -> u64 {
    let v = v.max(1);
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            if let Some(c) = p.checked_mul(m)
                && c >= v
            {
                return c;
            }
        }
        match p.checked_mul(10) {
            Some(n) => p = n,
            None => return v,
        }
    }
}

/// The top of the value scale for a peak of `max`: a multiple of a round step (about five
/// steps in all), with room above the peak for its label.
fn scale_top(max: u64) -> u64 {
    let step = nice_step(max.div_ceil(5));
    (max + max / 10 + 1).div_ceil(step) * step
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            dejavu::sans_condensed::regular(),
        )
        .is_err()
        {
            tracing::error!("the compiled-in chart font cannot be read; charts will have no text");
        }
    });
}

/// The chart as the HTML shows it, found at `src`: its size and its alt text.
pub fn image<'a>(s: &Summary, src: super::render::ChartSrc<'a>) -> super::render::ChartImage<'a> {
    super::render::ChartImage {
        src,
        size: SIZE,
        alt: alt_text(s),
    }
}

/// Draws the chart of `s`; `None` when there is nothing to draw (no failure in the window).
pub fn png(s: &Summary) -> Option<Vec<u8>> {
    let buckets = buckets(s);
    let max = buckets.iter().map(|b| b.count).max().filter(|m| *m > 0)?;
    register_font();
    let (w, h) = SIZE;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    draw(s, &buckets, max, &mut rgb).ok()?;
    encode(&rgb, w, h)
}

fn draw(
    s: &Summary,
    buckets: &[Bucket],
    max: u64,
    rgb: &mut [u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let daily = buckets.first().is_some_and(|b| b.daily);
    let n = buckets.len();
    // Room above the peak for its label.
    let top = scale_top(max);
    let zone = Local
        .timestamp_opt(s.to_ts, 0)
        .earliest()
        .map_or(String::new(), |t| t.format("UTC%:z").to_string());
    let title = format!(
        "Failed logins per {}, {}",
        if daily { "day" } else { "hour" },
        super::render::window_words(s)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(48)
        // (A discrete range holds both ends: `0..n - 1` is n slots.)
        .build_cartesian_2d((0..n as i32 - 1).into_segmented(), 0u64..top)?;
    // Every label when they fit, else every second, third... one.
    let step = n.div_ceil(24).max(1);
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) if (*i as usize).is_multiple_of(step) => buckets
            .get(*i as usize)
            .map_or(String::new(), |b| b.label_short.clone()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .x_labels(n.min(200))
        .y_labels(6)
        .x_label_formatter(&label)
        .y_label_formatter(&|v: &u64| v.to_string())
        .x_desc(if daily {
            format!("day ({zone})")
        } else {
            format!("hour ({zone})")
        })
        .y_desc("failed logins")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 13))
        .draw()?;
    // A pixel between bars while they are wide enough to spare it (a year's days are not).
    let gap = u32::from(n <= 120);
    chart.draw_series(buckets.iter().enumerate().map(|(i, b)| {
        let right = if i + 1 == n {
            SegmentValue::Last
        } else {
            SegmentValue::Exact(i as i32 + 1)
        };
        let mut r = Rectangle::new(
            [(SegmentValue::Exact(i as i32), 0), (right, b.count)],
            BAR.filled(),
        );
        r.set_margin(0, 0, gap, gap);
        r
    }))?;
    // The peak (the first, when several hours tie), its value above its bar.
    if let Some(i) = buckets.iter().position(|b| b.count == max) {
        let style = TextStyle::from((FONT, 13).into_font()).color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ),
        );
        chart.draw_series(std::iter::once(Text::new(
            format!("peak {max}"),
            (SegmentValue::CenterOf(i as i32), max + top / 40),
            style,
        )))?;
    }
    root.present()?;
    Ok(())
}

/// Encodes an RGB buffer as PNG.
fn encode(rgb: &[u8], w: u32, h: u32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().ok()?;
        writer.write_image_data(rgb).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::HourCount;

    fn day(counts: impl Fn(i64) -> u64) -> Summary {
        let from = 1_795_302_000;
        Summary {
            from_ts: from,
            to_ts: from + 86_400,
            per_hour: (0..24)
                .map(|h| HourCount {
                    start: String::new(),
                    ts: from + h * 3600,
                    count: counts(h),
                })
                .collect(),
            ..Summary::default()
        }
    }

    /// The PNG's pixels, RGB.
    fn pixels(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    /// Pixels in a rectangle that are dark grey or black (text and axes; bars are blue).
    fn dark(img: &(u32, u32, Vec<u8>), x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> usize {
        let (w, _, buf) = img;
        let mut n = 0;
        for yy in y {
            for xx in x.clone() {
                let i = ((yy * w + xx) * 3) as usize;
                let (r, g, b) = (buf[i], buf[i + 1], buf[i + 2]);
                if r < 120 && g < 120 && b < 120 && r.abs_diff(b) < 30 {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn the_chart_has_text_where_its_labels_go() {
        let bytes = png(&day(|h| (h as u64 * 7) % 23)).expect("a chart");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/report-chart-unit.png"),
            &bytes,
        )
        .ok();
        let img = pixels(&bytes);
        assert_eq!((img.0, img.1), SIZE);
        let (w, h) = SIZE;
        // The title, the value scale on the left, the hour labels at the bottom.
        assert!(dark(&img, 100..w - 100, 0..30) > 200, "no title");
        assert!(dark(&img, 0..58, 40..h - 50) > 150, "no value scale");
        // Under the axis and its ticks (h - 50 to h - 44), above the axis' name.
        assert!(
            dark(&img, 60..w - 10, h - 43..h - 28) > 300,
            "no hour labels"
        );
        assert!(png(&day(|_| 0)).is_none(), "nothing to draw");
    }

    #[test]
    fn long_windows_are_drawn_per_day() {
        let from = 1_795_302_000;
        let s = Summary {
            from_ts: from,
            to_ts: from + 7 * 86_400,
            per_hour: (0..7 * 24)
                .map(|h| HourCount {
                    start: String::new(),
                    ts: from + h * 3600,
                    count: 1,
                })
                .collect(),
            ..Summary::default()
        };
        let b = buckets(&s);
        assert!((7..=8).contains(&b.len()), "{b:?}");
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 7 * 24);
        assert!(b.iter().all(|b| b.daily && b.label_short.len() == 5));
        assert!(png(&s).is_some());
    }

    #[test]
    fn the_alt_text_names_the_peak() {
        let s = day(|h| if h == 14 { 63 } else { 1 });
        let alt = alt_text(&s);
        assert!(
            alt.starts_with("Chart of failed logins per hour: 86 in all, peak 63 at "),
            "{alt}"
        );
        assert_eq!(
            alt_text(&day(|_| 0)),
            "Chart of failed logins per hour: none"
        );
    }

    #[test]
    fn scale_tops_are_round() {
        assert_eq!(
            [1, 3, 7, 11, 22, 63, 120, 999, 5000].map(scale_top),
            [2, 4, 8, 15, 25, 80, 150, 1200, 6000]
        );
    }
}
