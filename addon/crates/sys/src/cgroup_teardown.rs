//! Removing a container's cgroup when it is deleted, for the engine (through the addon) and
//! the native CLI alike: the directories its create made, then the shared parents recorded
//! in the state root's ledger that nothing uses any more.

use std::path::Path;
use std::time::Duration;

/// Removes `created` deepest first (it is listed deepest last). A directory the kernel
/// still calls busy (its last processes are exiting) is retried for up to a second; one
/// with another cgroup below it is left. Returns what could not be removed.
pub fn remove_dirs(created: &[String]) -> Vec<String> {
    created.iter().rev().filter(|dir| !rmdir_retry(dir)).cloned().collect()
}

fn rmdir_retry(dir: &str) -> bool {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return false, // ENOTEMPTY: another container's cgroup lives below
        }
    }
    false
}

/// The ledger (one directory per line) lists parent cgroups tsbox created and later
/// containers share. After a container's own directories (`leaves`) are gone, removes the
/// listed parents above them that are now empty, deepest first, and rewrites the ledger
/// without them; an empty ledger is removed. No ledger: this root never made a parent.
pub fn release_parents(ledger: &Path, leaves: &[String]) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(ledger) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut listed: Vec<&str> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if !listed.contains(&line) {
            listed.push(line);
        }
    }
    // Deepest first: a parent can only go once its children have.
    listed.sort_by_key(|d| std::cmp::Reverse(d.len()));
    let above = |d: &str| leaves.iter().any(|leaf| leaf.starts_with(&format!("{d}/")));
    let keep: Vec<&str> = listed
        .into_iter()
        .filter(|d| match above(d) {
            false => true,
            true => std::fs::remove_dir(d).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound), // still in use
        })
        .collect();
    if keep.is_empty() {
        std::fs::remove_file(ledger).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
    } else {
        std::fs::write(ledger, keep.iter().map(|d| format!("{d}\n")).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tsbox-teardown-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn s(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn removes_what_create_made_deepest_first_and_reports_what_stays() {
        let t = tmp("dirs");
        let (a, b, c) = (t.join("a"), t.join("a/b"), t.join("a/b/c"));
        std::fs::create_dir_all(c.join("other")).expect("dirs");
        // c holds someone else's directory: c and its parents stay, reported.
        assert_eq!(remove_dirs(&[s(&a), s(&b), s(&c)]), vec![s(&c), s(&b), s(&a)]);
        std::fs::remove_dir(c.join("other")).expect("rmdir");
        assert_eq!(remove_dirs(&[s(&a), s(&b), s(&c), s(&t.join("gone"))]), Vec::<String>::new());
        assert!(!a.exists());
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn parents_go_with_their_last_child_and_the_ledger_with_its_last_line() {
        let t = tmp("ledger");
        let (p, q, other) = (t.join("p"), t.join("p/q"), t.join("o"));
        std::fs::create_dir_all(q.join("c2")).expect("dirs");
        std::fs::create_dir_all(&other).expect("dirs");
        let ledger = t.join("ledger");
        std::fs::write(&ledger, format!("{}\n{}\n{}\n{}\n", s(&p), s(&q), s(&other), s(&q))).expect("ledger");
        // c1 went; q still has c2: nothing above c1 can go, nothing is forgotten.
        release_parents(&ledger, &[s(&q.join("c1"))]).expect("release");
        assert_eq!(std::fs::read_to_string(&ledger).expect("ledger"), format!("{}\n{}\n{}\n", s(&q), s(&p), s(&other)));
        std::fs::remove_dir(q.join("c2")).expect("rmdir");
        release_parents(&ledger, &[s(&q.join("c2"))]).expect("release");
        assert!(!p.exists() && other.exists());
        assert_eq!(std::fs::read_to_string(&ledger).expect("ledger"), format!("{}\n", s(&other)));
        release_parents(&ledger, &[s(&other.join("c3"))]).expect("release");
        assert!(!ledger.exists() && !other.exists());
        release_parents(&ledger, &[s(&other.join("c3"))]).expect("no ledger is fine");
        let _ = std::fs::remove_dir_all(&t);
    }
}
