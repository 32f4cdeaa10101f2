//! A QR code as inline SVG, drawn by the node: no image library, no third-party service.

/// `data` as an SVG QR code (medium error correction, a 4-module quiet zone), one path of dark
/// modules; `None` when the data does not fit a QR code.
pub fn svg(data: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let quiet = 4;
    let size = width + 2 * quiet;
    // One rectangle per horizontal run of dark modules.
    let mut path = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] != qrcode::Color::Dark {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] == qrcode::Color::Dark {
                x += 1;
            }
            path.push_str(&format!("M{} {}h{}v1h-{}z", start + quiet, y + quiet, x - start, x - start));
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" role=\"img\" aria-label=\"QR code of the payment request\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_payment_uri_becomes_one_svg_of_dark_modules() {
        let svg = super::svg("ethereum:0x00000000000000000000000000000000000000aa@31337?value=1").expect("fits");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.matches("v1h-").count() > 100, "a real code has many runs of dark modules");
        assert!(super::svg(&"x".repeat(4000)).is_none(), "too long for any QR code");
    }
}
