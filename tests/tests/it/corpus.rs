//! The corpus tier: runs when `LAYERSTORE_CORPUS` names a directory built by
//! `shared/corpus/build-debian-series` (OCI layout at `$LAYERSTORE_CORPUS/oci`). Every image is
//! imported from the layout, from an oci-archive and from a docker-archive (made with skopeo),
//! every checkout must equal `umoci unpack`, and every layer must rebuild to its diff_id.

use std::path::PathBuf;

use crate::common::*;
use layerstore_store::CheckoutOptions;

const IMAGES: [&str; 5] = ["base-v1", "app-v1", "base-v2", "app-v2", "app-v3"];

fn corpus() -> Option<PathBuf> {
    match std::env::var_os("LAYERSTORE_CORPUS") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => {
            layerstore_tests::skip(
                "corpus tier: set LAYERSTORE_CORPUS to a corpus built by shared/corpus/build-debian-series",
            );
            None
        }
    }
}

#[test]
fn corpus_checkouts_equal_umoci_and_layers_round_trip() {
    let Some(corpus) = corpus() else { return };
    let tmp =
        tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or("/var/tmp".into())).unwrap();
    let store = new_store(tmp.path());
    for name in IMAGES {
        import(
            &store,
            &format!("oci:{}:{name}", corpus.join("oci").display()),
        )
        .unwrap();
        let img = store.resolve_image(name).unwrap();
        for l in &img.layers {
            let mut h = layerstore_store::DigestHasher::default();
            let mut w = HashWriter(&mut h);
            store.export_layer_tar(&l.diff_id, &mut w).unwrap();
            assert_eq!(h.finish(), l.diff_id, "{name}: layer round trip");
        }
        let ours = tmp.path().join(format!("co-{name}"));
        store
            .checkout(
                &store.merged_tree(&img).unwrap(),
                &ours,
                &CheckoutOptions::default(),
            )
            .unwrap();
        let bundle = tmp.path().join(format!("umoci-{name}"));
        let rootfs = umoci_unpack(&format!("{}:{name}", corpus.join("oci").display()), &bundle);
        assert_same_tree(&ours, &rootfs);
        std::fs::remove_dir_all(&ours).unwrap();
        std::fs::remove_dir_all(&bundle).unwrap();
    }
    assert_sound(&store);
}

#[test]
fn corpus_archives_import_to_the_same_trees() {
    let Some(corpus) = corpus() else { return };
    let tmp =
        tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or("/var/tmp".into())).unwrap();
    let store = new_store(tmp.path());
    for name in IMAGES {
        let oci_tar = tmp.path().join(format!("{name}.oci.tar"));
        let docker_tar = tmp.path().join(format!("{name}.docker.tar"));
        let layout = format!("oci:{}:{name}", corpus.join("oci").display());
        run(std::process::Command::new("skopeo")
            .args(["copy", "-q", &layout])
            .arg(format!("oci-archive:{}:{name}", oci_tar.display())));
        run(std::process::Command::new("skopeo")
            .args(["copy", "-q", &layout])
            .arg(format!(
                "docker-archive:{}:{name}:latest",
                docker_tar.display()
            )));
        let a = import(&store, &layout).unwrap();
        let b = import(&store, &format!("oci-archive:{}:{name}", oci_tar.display())).unwrap();
        let c = import(&store, &format!("docker-archive:{}", docker_tar.display())).unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest, "{name}");
        let trees: Vec<_> = [&a.name, &c.name]
            .iter()
            .map(|n| {
                store
                    .merged_tree(&store.resolve_image(n).unwrap())
                    .unwrap()
                    .entries
            })
            .collect();
        assert_eq!(trees[0], trees[1], "{name}: docker-archive tree");
        std::fs::remove_file(oci_tar).unwrap();
        std::fs::remove_file(docker_tar).unwrap();
    }
    let df = store.df().unwrap();
    assert!(
        df.layers == 5,
        "five distinct layers, whatever the source: {}",
        df.layers
    );
    assert_sound(&store);
}

struct HashWriter<'a>(&'a mut layerstore_store::DigestHasher);
impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
