//! The HTTP/2 limits reach the wire: the SETTINGS frame (and the first
//! connection WINDOW_UPDATE) a client gets carry the configured values,
//! and the defaults are the documented ones.

mod common;
mod h2frames;

use common::*;
use h2frames::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::time::Instant;

/// The server's first SETTINGS, by identifier, and the connection window it
/// opened to (65,535 plus its first stream-0 WINDOW_UPDATE).
async fn advertised(addr: SocketAddr) -> (HashMap<u16, u32>, u32) {
    let (mut r, _w) = connect(addr, &[]).await;
    let mut settings = None;
    let mut window = 65_535u32;
    let deadline = Instant::now() + STEP;
    // The WINDOW_UPDATE, if any, follows the SETTINGS at once; stop at the
    // first other frame or when nothing more comes quickly.
    loop {
        let limit = if settings.is_some() {
            std::time::Duration::from_millis(200)
        } else {
            STEP
        };
        let Ok(Some(f)) =
            tokio::time::timeout(limit.min(deadline - Instant::now()), read_frame(&mut r)).await
        else {
            break;
        };
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                let map = f
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
                settings = Some(map);
            }
            WINDOW_UPDATE if f.stream == 0 => {
                let b = &f.payload;
                window += u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
                break;
            }
            _ => {}
        }
    }
    (settings.expect("the server's SETTINGS"), window)
}

const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;

#[tokio::test]
async fn h2_settings_carry_the_configured_windows_frame_size_and_header_list_size() {
    within(async {
        let mut config = config();
        config.h2_initial_stream_window = 12_345;
        config.h2_initial_connection_window = 500_000;
        config.h2_max_frame_size = 32_768;
        config.h2_max_header_list_size = 8_000;
        let srv = start(config).await;
        let (s, window) = advertised(srv.addr).await;
        assert_eq!(s.get(&INITIAL_WINDOW_SIZE), Some(&12_345), "{s:?}");
        assert_eq!(s.get(&MAX_FRAME_SIZE), Some(&32_768), "{s:?}");
        assert_eq!(s.get(&MAX_HEADER_LIST_SIZE), Some(&8_000), "{s:?}");
        assert_eq!(window, 500_000);
    })
    .await;
}

#[tokio::test]
async fn h2_default_windows_are_small_for_an_sse_hub() {
    within(async {
        let srv = start_default().await;
        let (s, window) = advertised(srv.addr).await;
        // 65,535 is the protocol's own default, so h2 may leave it out.
        assert_eq!(
            s.get(&INITIAL_WINDOW_SIZE).copied().unwrap_or(65_535),
            65_535,
            "{s:?}"
        );
        assert_eq!(s.get(&MAX_FRAME_SIZE).copied().unwrap_or(16_384), 16_384, "{s:?}");
        assert_eq!(s.get(&MAX_HEADER_LIST_SIZE), Some(&16_384), "{s:?}");
        assert_eq!(window, 256 * 1024);
    })
    .await;
}
