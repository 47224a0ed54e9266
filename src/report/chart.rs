//! The attempts-per-hour chart of the report mail: a PNG bar chart drawn with plotters.
//!
//! It carries no text (the bitmap backend would need a system font, which a server may not
//! have): the HTML part states what it shows and the hours are in the table below it.

use plotters::prelude::*;

use super::summary::Count;

/// Width and height of the chart, pixels.
pub const SIZE: (u32, u32) = (720, 240);

/// Draws `per_hour` as bars; `None` when there is nothing to draw.
pub fn per_hour_png(per_hour: &[Count]) -> Option<Vec<u8>> {
    if per_hour.is_empty() || per_hour.iter().all(|c| c.count == 0) {
        return None;
    }
    let (w, h) = SIZE;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let max = per_hour.iter().map(|c| c.count).max().unwrap_or(1).max(1);
        let n = per_hour.len() as u32;
        let area = root.margin(10, 10, 10, 10);
        let (aw, ah) = area.dim_in_pixel();
        let bar = (aw / n).max(1);
        for (i, c) in per_hour.iter().enumerate() {
            let height = (c.count as f64 / max as f64 * ah as f64).round() as i32;
            let x = i as i32 * bar as i32;
            area.draw(&Rectangle::new(
                [
                    (x, ah as i32 - height),
                    (x + bar.saturating_sub(1).max(1) as i32, ah as i32),
                ],
                RGBColor(0x2b, 0x6c, 0xb0).filled(),
            ))
            .ok()?;
        }
        area.draw(&PathElement::new(
            vec![(0, ah as i32 - 1), (aw as i32, ah as i32 - 1)],
            BLACK,
        ))
        .ok()?;
        root.present().ok()?;
    }
    let mut png = Vec::new();
    let encoder = image_png_encoder(&mut png, w, h);
    encoder(&rgb)?;
    Some(png)
}

/// Encodes an RGB buffer as PNG.
fn image_png_encoder(out: &mut Vec<u8>, w: u32, h: u32) -> impl FnOnce(&[u8]) -> Option<()> + '_ {
    move |rgb: &[u8]| {
        let mut enc = png::Encoder::new(out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().ok()?;
        writer.write_image_data(rgb).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        let hours: Vec<Count> = (0..24)
            .map(|i| Count {
                key: format!("h{i}"),
                count: (i * 7 % 11) as u64,
                previous: None,
            })
            .collect();
        let png = per_hour_png(&hours).expect("a chart");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(per_hour_png(&[]).is_none());
    }
}
