use super::*;
use crate::df::ObjectTotals;
use crate::store::StoreOptions;

/// A policy with no roots.
fn nothing(_: &[RefInfo]) -> Roots {
    Roots::default()
}

/// A store with three loose objects that have rows (no layer names them) and one stray
/// file without a row. Returns the rows' ids and the stray's.
fn store_with_rows_and_a_stray(dir: &std::path::Path) -> (Store, Vec<ObjectId>, ObjectId) {
    let s = Store::init(&dir.join("s"), &StoreOptions::default()).unwrap();
    let st = s.staging("t").unwrap();
    let mut ids = Vec::new();
    for i in 0..4u8 {
        ids.push(st.put_bytes(&[i; 10_000]).unwrap().0.id);
    }
    st.flush().unwrap();
    st.remove().unwrap();
    let stray = ids.pop().unwrap();
    {
        let conn = s.conn();
        conn.execute_batch("DELETE FROM lease_objects").unwrap();
        for id in &ids {
            conn.execute(
                "INSERT INTO objects (id, size, loose) VALUES (?1, 10000, 1)",
                [&id.as_bytes()[..]],
            )
            .unwrap();
            ObjectTotals::row(10_000, true, 10_000)
                .add_to(&conn)
                .unwrap();
        }
    }
    ids.sort();
    (s, ids, stray)
}

/// What a sweep killed before its commit leaves: the marker, and every file doomed.
fn kill_a_sweep(s: &Store, ids: &[ObjectId]) {
    s.set_sweep_marker().unwrap();
    for id in ids {
        s.doom_loose(id).unwrap();
    }
}

/// A gc killed during its sweep, after it renamed doomed files and before its transaction
/// committed, leaves rows whose files carry doomed names. Opening the store puts those files
/// back (the sweep marker says a sweep was interrupted); a doomed file without a row stays
/// doomed, and the next gc removes it.
#[test]
fn a_sweep_killed_before_its_commit_is_undone_when_the_store_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, stray) = store_with_rows_and_a_stray(tmp.path());
    kill_a_sweep(&s, &[&ids[..], &[stray]].concat());
    assert!(s.loose_ids().unwrap().is_empty());
    let path = s.path().to_owned();
    drop(s);

    let s = Store::open(&path).unwrap();
    assert!(!path.join(crate::object::SWEEP_MARKER).exists());
    let mut back = s.loose_ids().unwrap();
    back.sort();
    assert_eq!(back, ids, "every file with a row is back, the stray is not");
    let mark = s.mark(&nothing).unwrap();
    assert_eq!(mark.leftovers().len(), 1, "the stray's doomed file");
    mark.leftovers().unlink(&s).unwrap();
    assert!(s.scan_objects().unwrap().doomed.is_empty());
    assert!(s.fsck(&Default::default()).unwrap().is_clean());
}

/// A sweep killed while another handle of the store was open (another gc waiting for
/// `gc.lock`): that handle's mark puts the files back before it lists leftovers, so it does
/// not unlink files whose rows stand.
#[test]
fn a_mark_undoes_a_sweep_killed_while_the_store_was_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, stray) = store_with_rows_and_a_stray(tmp.path());
    let waiting = Store::open(s.path()).unwrap();
    kill_a_sweep(&s, &[&ids[..], &[stray]].concat());
    drop(s);

    let mark = waiting.mark(&nothing).unwrap();
    assert_eq!(
        mark.leftovers().len(),
        1,
        "only the stray's file is a leftover"
    );
    mark.leftovers().unlink(&waiting).unwrap();
    let mut back = waiting.loose_ids().unwrap();
    back.sort();
    assert_eq!(back, ids);
    assert!(waiting.fsck(&Default::default()).unwrap().is_clean());
}

/// A sweep dropped without being applied (an error or a panic between) puts its doomed
/// files back and removes the marker, as a reopen would.
#[test]
fn a_sweep_dropped_unapplied_puts_its_files_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, stray) = store_with_rows_and_a_stray(tmp.path());
    let sweep = s.begin_sweep().unwrap();
    for id in ids.iter().chain([&stray]) {
        s.doom_loose(id).unwrap();
    }
    drop(sweep);
    assert!(!s.path().join(crate::object::SWEEP_MARKER).exists());
    let mut back = s.loose_ids().unwrap();
    back.sort();
    assert_eq!(
        back, ids,
        "files with rows are back, the stray stays doomed"
    );
}

/// The mark and the sweep agree, and the sweep removes what the mark found dead: here the
/// rows no layer names, and the stray.
#[test]
fn a_sweep_removes_what_the_mark_found_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, _) = store_with_rows_and_a_stray(tmp.path());
    let mark = s.mark(&nothing).unwrap();
    let planned = mark.dead().clone();
    assert_eq!((planned.objects, planned.loose_files), (3, 3));
    assert_eq!((planned.stray_files, planned.stray_bytes), (1, 10_000));
    let swept = s.begin_sweep().unwrap().apply(mark, &nothing).unwrap();
    assert_eq!(swept.removed, planned);
    assert_eq!(swept.unlinked, ids.len() as u64 + 1);
    assert!(s.scan_objects().unwrap().ids.is_empty());
    assert!(s.object_ids().unwrap().is_empty());
    assert!(s.fsck(&Default::default()).unwrap().is_clean());
}

/// The sha256 rows a partial pull recorded go with the objects a sweep removes, so a store
/// that pulls and collects does not keep a row for every content it ever held.
#[test]
fn a_sweep_removes_the_sha256_rows_of_the_objects_it_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, _) = store_with_rows_and_a_stray(tmp.path());
    let pairs: Vec<_> = ids
        .iter()
        .map(|id| (*id, crate::Digest::of(id.as_bytes())))
        .collect();
    s.record_sha256(&pairs).unwrap();
    let rows = |s: &Store| -> i64 {
        s.conn()
            .query_row("SELECT count(*) FROM object_sha256", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&s), 3);
    let mark = s.mark(&nothing).unwrap();
    s.begin_sweep().unwrap().apply(mark, &nothing).unwrap();
    assert_eq!(rows(&s), 0);
}

/// What a sweep does between its commit and its renames, held there: the rows of `ids`
/// gone and the generation bumped (the commit), the dooming lock held. Returns the lock.
fn commit_a_sweep_of(s: &Store, ids: &[ObjectId]) -> StoreLock {
    let conn = s.conn();
    for id in ids {
        conn.execute("DELETE FROM objects WHERE id = ?1", [&id.as_bytes()[..]])
            .unwrap();
    }
    drop(conn);
    s.bump_sweep_generation().unwrap();
    s.dooming_lock(LockMode::Exclusive).unwrap()
}

/// An import batch that found a file a committed sweep has yet to rename waits for the
/// renames (the dooming lock) after its pin, and then finds the file gone: its flush fails
/// (the import retries and writes the content) instead of relying on a file about to go.
#[test]
fn a_flush_that_found_a_file_a_committed_sweep_dooms_waits_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, _) = store_with_rows_and_a_stray(tmp.path());
    let lease = s.begin_lease("import in flight").unwrap();
    let content = [0u8; 10_000];
    let (obj, hit) = lease.staging().put_bytes(&content).unwrap();
    assert_eq!(hit, crate::object::PutOutcome::Deduplicated);
    assert!(ids.contains(&obj.id));
    let dooming = commit_a_sweep_of(&s, &ids);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        sc.spawn(|| tx.send(lease.staging().flush()).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(rx.try_recv().is_err(), "the flush waits for the renames");
        for id in &ids {
            s.doom_loose(id).unwrap();
        }
        s.bump_sweep_generation().unwrap();
        drop(dooming);
        match rx.recv().unwrap() {
            Err(Error::ObjectSwept { id }) => assert_eq!(id, obj.id.hex()),
            other => panic!("flush after the renames: {other:?}"),
        }
    });
}

/// A batch of content nobody had (nothing found, no name taken) does not wait for a
/// sweep's renames.
#[test]
fn a_flush_of_new_content_does_not_wait_for_a_sweeps_renames() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, _) = store_with_rows_and_a_stray(tmp.path());
    let lease = s.begin_lease("import in flight").unwrap();
    let (obj, hit) = lease.staging().put_bytes(&[9u8; 10_000]).unwrap();
    assert_eq!(hit, crate::object::PutOutcome::Written);
    let _dooming = commit_a_sweep_of(&s, &ids);
    lease.staging().flush().unwrap();
    assert!(s.loose_state(&obj.id, 10_000).unwrap().is_some());
}

/// A gc killed after its commit, half-way through the deletions after its lock: a dead
/// layer is a tombstone whose entries still name an object (whose row stands), other
/// objects' rows are gone but their files not yet renamed. The store is sound (those files
/// are files no row names), and the next gc removes all of it.
#[test]
fn a_gc_killed_after_its_commit_leaves_garbage_the_next_gc_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ids, _) = store_with_rows_and_a_stray(tmp.path());
    s.conn()
        .execute_batch(&format!(
            "INSERT INTO layers (id, diff_id, merged, tar_size, entry_count, content_size,
                                 skeleton, imported_at)
                 VALUES (7, '{TOMBSTONE_PREFIX}7', 1, 0, 1, 10000, x'', 0);"
        ))
        .unwrap();
    s.conn()
        .execute(
            "INSERT INTO entries (layer, seq, path, kind, mode, uid, gid, mtime, mtime_nsec,
                                  size, object, dev_major, dev_minor)
                 VALUES (7, 0, x'61', 0, 420, 0, 0, 0, 0, 10000, ?1, 0, 0)",
            [&ids[0].as_bytes()[..]],
        )
        .unwrap();
    drop(commit_a_sweep_of(&s, &ids[1..]));
    for _ in &ids[1..] {
        ObjectTotals::row(10_000, true, 10_000)
            .negated()
            .add_to(&s.conn())
            .unwrap();
    }
    let rep = s.fsck(&Default::default()).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.findings);
    assert_eq!(rep.unreferenced_files, ids.len() as u64);

    let mark = s.mark(&nothing).unwrap();
    assert_eq!(mark.dead().layers, vec![format!("{TOMBSTONE_PREFIX}7")]);
    assert_eq!(mark.dead().objects, 1);
    assert_eq!(mark.dead().stray_files, ids.len() as u64);
    s.begin_sweep().unwrap().apply(mark, &nothing).unwrap();
    assert!(s.scan_objects().unwrap().ids.is_empty());
    let left: i64 = s
        .conn()
        .query_row("SELECT count(*) FROM layers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the tombstone went with the next sweep");
    assert!(s.fsck(&Default::default()).unwrap().is_clean());
}
