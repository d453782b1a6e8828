//! The host importer against real directories, git repositories and bundles.

use std::path::Path;
use std::process::Command;

use futures::StreamExt;

use aether_domain::Code;
use aether_import::HostImporter;
use aether_ports::sources::{ImportItem, ImportOrigin};
use aether_ports::store::Importer;

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn items(importer: &HostImporter, origin: ImportOrigin) -> Vec<String> {
    let mut stream = importer.open(origin).await.expect("open");
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(match item.expect("item") {
            ImportItem::Dir { path, mode } => format!("d {path} {mode:o}"),
            ImportItem::File { path, mode, data } => {
                format!("f {path} {mode:o} {}", String::from_utf8_lossy(&data))
            }
            ImportItem::Symlink { path, target } => format!("l {path} {target}"),
        });
    }
    out
}

fn tree(dir: &Path) {
    sh(
        dir,
        "mkdir -p src/deep && printf 'fn main() {}' > src/main.rs && printf x > src/deep/x \
         && chmod 700 src/deep && chmod 755 src/main.rs && ln -s src/main.rs entry",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_a_directory_in_order_within_its_roots() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().join("project");
    std::fs::create_dir(&dir).expect("mkdir");
    tree(&dir);
    let importer = HostImporter::new(vec![root.path().to_owned()]);
    let got = items(
        &importer,
        ImportOrigin::LocalPath(dir.display().to_string()),
    )
    .await;
    assert_eq!(
        got,
        [
            "l /entry src/main.rs",
            "d /src 755",
            "d /src/deep 700",
            "f /src/deep/x 644 x",
            "f /src/main.rs 755 fn main() {}",
        ]
    );
    let outside = HostImporter::new(vec![dir.join("src")]);
    let e = outside
        .open(ImportOrigin::LocalPath(dir.display().to_string()))
        .await
        .err()
        .expect("outside the roots");
    assert_eq!(e.code, Code::PermissionDenied, "{e}");
    let none = HostImporter::new(Vec::new());
    let e = none
        .open(ImportOrigin::LocalPath(dir.display().to_string()))
        .await
        .err()
        .expect("no roots");
    assert!(e.message.contains("import_roots"), "{e}");
    let e = importer
        .open(ImportOrigin::LocalPath(
            dir.join("nope").display().to_string(),
        ))
        .await
        .err()
        .expect("missing");
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_a_repository_and_a_bundle_without_their_git_dir() {
    let root = tempfile::tempdir().expect("tmp");
    let repo = root.path().join("repo");
    std::fs::create_dir(&repo).expect("mkdir");
    tree(&repo);
    sh(
        &repo,
        "git init -q -b main . && git add -A && git -c user.name=t -c user.email=t@e commit -qm one \
         && git tag v1 && printf 'fn main() { two() }' > src/main.rs \
         && git -c user.name=t -c user.email=t@e commit -qam two && git bundle create ../repo.bundle --all 2>/dev/null",
    );
    let importer = HostImporter::new(vec![root.path().to_owned()]);
    let head = items(
        &importer,
        ImportOrigin::Git {
            url: repo.display().to_string(),
            reference: None,
        },
    )
    .await;
    assert!(
        head.contains(&"f /src/main.rs 755 fn main() { two() }".to_owned()),
        "{head:?}"
    );
    assert!(head.iter().all(|i| !i.contains(".git")), "{head:?}");
    let tagged = items(
        &importer,
        ImportOrigin::Git {
            url: format!("file://{}", repo.display()),
            reference: Some("v1".into()),
        },
    )
    .await;
    assert!(
        tagged.contains(&"f /src/main.rs 755 fn main() {}".to_owned()),
        "{tagged:?}"
    );
    let bundled = items(
        &importer,
        ImportOrigin::GitBundle(root.path().join("repo.bundle").display().to_string()),
    )
    .await;
    assert_eq!(
        bundled, head,
        "a bundle of the repository imports the same tree"
    );
    let mut bad = importer
        .open(ImportOrigin::Git {
            url: repo.display().to_string(),
            reference: Some("no-such-branch".into()),
        })
        .await
        .expect("open");
    let e = bad.next().await.expect("an item").expect_err("clone fails");
    assert!(e.message.contains("git clone failed"), "{e}");
}
