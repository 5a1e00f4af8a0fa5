//! The tar entry stream: any bytes give entries or a typed error, never a panic, and the
//! skeleton plus contents rebuild exactly the bytes consumed.
#![no_main]

use layerstore_import::tarparse::{TarKind, TarLimits, TarParser};
use layerstore_store::ObjectId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = TarLimits { max_record: 1 << 16, max_raw_data: 1 << 16, raw_trailer: 1 << 10 };
    let mut p = TarParser::new(data, limits);
    let mut contents = Vec::new();
    loop {
        match p.next_entry() {
            Ok(Some(e)) => {
                if e.kind == TarKind::Regular {
                    let mut buf = vec![0u8; 4096];
                    let mut content = Vec::new();
                    loop {
                        match p.read_content(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => content.extend_from_slice(&buf[..n]),
                            Err(_) => return,
                        }
                    }
                    let id = ObjectId::of(&content);
                    p.content_done(content.len() as u64, id);
                    contents.push((id, content));
                }
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let consumed = p.position() as usize;
    let sk = std::mem::take(&mut p.skeleton).finish().unwrap();
    let sk = layerstore_store::skeleton::Skeleton::decode(&sk, consumed * 2 + 65536).unwrap();
    let mut out = Vec::new();
    sk.rebuild(&mut out, |s, w| -> std::io::Result<()> {
        let (_, c) = contents.iter().find(|(id, _)| *id == s.object).unwrap();
        std::io::Write::write_all(w, c)
    })
    .unwrap();
    assert_eq!(&out[..], &data[..consumed]);
});
