//! Each run's private filesystem, held in host memory: a writable working
//! directory (`/sandbox`, the cwd, where the entry file lives), a writable
//! `/tmp`, and an optional read-only [`Layer`] shared by every run without
//! copying. Nothing here touches the host's disk, and everything is dropped
//! with the run.
//!
//! Every quota of [`FileLimits`] is enforced where the state changes, so a
//! guest meets them as a program meets a full disk (`ENOSPC`, `EFBIG`,
//! `ENAMETOOLONG`, ...), never as a crash:
//!
//! - `bytes`: the logical size of every file (a sparse write at 10 GB counts
//!   10 GB, as it would be stored here) plus every entry's name;
//! - `count`: files and directories alive, unlinked-but-open ones included;
//! - `file_bytes`: one file's size; `open`: descriptors held at once;
//! - `path_bytes` and `depth`: of any path from `/`, checked on create and on
//!   a rename that moves a tree.
//!
//! Symbolic and hard links are refused (`EPERM`); `..` never climbs above
//! the descriptor a path is resolved from (`EPERM`, as cap-std). The WASI
//! binding is [`wasi`]; this module is the tree and its rules.

pub mod wasi;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use wasmtime_wasi::HostWallClock;

pub use runbox_api::FileLimits;

pub use self::wasi::bindings::wasi::filesystem::types::ErrorCode;

/// The working directory of every run, and its `sys.path[0]`.
pub const WORKDIR: &str = "/sandbox";
/// The writable scratch directory (`tempfile` uses it).
pub const TMPDIR: &str = "/tmp";

/// A node of a run's tree or of the shared layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ino {
    Run(u32),
    Layer(u32),
}

/// Seconds and nanoseconds since the Unix epoch (WASI's `datetime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    pub seconds: u64,
    pub nanoseconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub links: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

#[derive(Debug)]
enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<String, u32>),
}

#[derive(Debug)]
struct Node {
    body: Body,
    atime: Time,
    mtime: Time,
    ctime: Time,
    /// In a directory (1) or unlinked (0); no hard links.
    linked: bool,
    /// Descriptors and streams holding the node.
    holds: u32,
    /// Written, created or moved by the run (an input file left alone is not).
    changed: bool,
}

/// Read-only files shared by all runs: built once, held by an `Arc`, read
/// in place (file contents are [`Bytes`], never copied into a run). A layer
/// holds one tree per mount point (a runtime's data at its own paths, the
/// operator's `EXECUTOR_SHARED_DIR` at `/shared`); each is a preopened
/// directory of every run.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    nodes: Vec<LayerNode>,
    /// Where each tree appears, and its root node.
    mounts: Vec<(String, u32)>,
}

#[derive(Debug, Clone)]
enum LayerNode {
    File(Bytes),
    Dir(BTreeMap<String, u32>),
}

impl Layer {
    /// A layer of `files` (relative `/`-separated paths and contents)
    /// mounted at `at`.
    pub fn from_files(at: &str, files: impl IntoIterator<Item = (String, Bytes)>) -> Layer {
        let mut layer = Layer::default();
        layer.mount_files(at, files);
        layer
    }

    /// Adds a tree of `files` at the absolute path `at`.
    pub fn mount_files(&mut self, at: &str, files: impl IntoIterator<Item = (String, Bytes)>) {
        let root = self.push(LayerNode::Dir(BTreeMap::new()));
        self.mounts.push((at.to_owned(), root));
        for (path, content) in files {
            let mut dir = root;
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let Some((name, dirs)) = parts.split_last() else {
                continue;
            };
            for part in dirs {
                dir = self.child_dir(dir, part);
            }
            let ino = self.push(LayerNode::File(content));
            if let LayerNode::Dir(entries) = &mut self.nodes[dir as usize] {
                entries.insert((*name).to_owned(), ino);
            }
        }
    }

    /// Adds every regular file under `root` (read once, at start) at `at`.
    pub fn mount_dir(&mut self, at: &str, root: &Path) -> std::io::Result<()> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Bytes)>) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    walk(root, &path, out)?;
                } else if kind.is_file() {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let Some(rel) = rel.to_str() else { continue };
                    out.push((rel.to_owned(), Bytes::from(std::fs::read(&path)?)));
                }
            }
            Ok(())
        }
        let mut files = Vec::new();
        walk(root, root, &mut files)?;
        self.mount_files(at, files);
        Ok(())
    }

    /// Where the layer's trees appear, in the order they were added.
    pub fn mount_points(&self) -> impl Iterator<Item = &str> {
        self.mounts.iter().map(|(at, _)| at.as_str())
    }

    fn push(&mut self, node: LayerNode) -> u32 {
        self.nodes.push(node);
        u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
    }

    fn child_dir(&mut self, dir: u32, name: &str) -> u32 {
        if let LayerNode::Dir(entries) = &self.nodes[dir as usize]
            && let Some(&ino) = entries.get(name)
        {
            return ino;
        }
        let ino = self.push(LayerNode::Dir(BTreeMap::new()));
        if let LayerNode::Dir(entries) = &mut self.nodes[dir as usize] {
            entries.insert(name.to_owned(), ino);
        }
        ino
    }

    /// Files in the layer.
    pub fn files(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, LayerNode::File(_)))
            .count()
    }
}

/// A directory a path is resolved from: its node, and where it sits (its
/// depth below `/` and the length of its path) for the path quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub ino: Ino,
    pub depth: u64,
    pub path_bytes: u64,
}

impl Base {
    /// The directory `ino` at the absolute `path` (`/` is depth 0 and
    /// length 0, so `/sandbox` is depth 1 and 8 bytes).
    fn of(path: &str, ino: Ino) -> Base {
        let parts = path.split('/').filter(|p| !p.is_empty());
        Base {
            ino,
            depth: parts.clone().count() as u64,
            path_bytes: parts.map(|p| 1 + p.len() as u64).sum(),
        }
    }
}

/// Where a path leads: an existing node, or a name to create in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Node(Ino, Base),
    Missing { dir: u32, name: String, at: Base },
}

/// What [`Tree::open`] was asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenHow {
    pub create: bool,
    pub exclusive: bool,
    pub directory: bool,
    pub truncate: bool,
    pub write: bool,
}

/// One run's tree, behind [`Fs`].
pub struct Tree {
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    layer: Arc<Layer>,
    limits: FileLimits,
    bytes: u64,
    count: u64,
    open: u64,
    clock: Box<dyn HostWallClock + Send>,
    /// `/sandbox`.
    workdir: u32,
    /// `/`: lists `sandbox` and `tmp`, and cannot be changed (`EACCES`, as
    /// for a user who does not own `/`).
    root: u32,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("bytes", &self.bytes)
            .field("count", &self.count)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

type Result<T> = std::result::Result<T, ErrorCode>;

/// Where a mounted root appears to the guest.
#[derive(Debug, Clone)]
pub struct Mount {
    pub path: String,
    pub base: Base,
}

/// A run's filesystem: the tree, shared by the run's descriptors and streams.
#[derive(Debug, Clone)]
pub struct Fs {
    tree: Arc<Mutex<Tree>>,
    mounts: Arc<Vec<Mount>>,
}

impl Fs {
    /// An empty `/sandbox` and `/tmp` under `limits`, with `layer`'s trees
    /// at their mount points when given. Timestamps come from `clock` (the run's own,
    /// as coarse as the guest's clocks).
    pub fn new(limits: FileLimits, layer: Option<Arc<Layer>>, clock: Box<dyn HostWallClock + Send>) -> Fs {
        let mut tree = Tree {
            nodes: Vec::new(),
            free: Vec::new(),
            layer: Arc::new(Layer::default()),
            limits,
            bytes: 0,
            count: 0,
            open: 0,
            clock,
            workdir: 0,
            root: 0,
        };
        let mount = |path: &str, ino| Mount {
            path: path.to_owned(),
            base: Base::of(path, ino),
        };
        let workdir = tree.alloc(Body::Dir(BTreeMap::new()));
        let tmp = tree.alloc(Body::Dir(BTreeMap::new()));
        let top = tree.alloc(Body::Dir(BTreeMap::from([
            (WORKDIR[1..].to_owned(), workdir),
            (TMPDIR[1..].to_owned(), tmp),
        ])));
        tree.workdir = workdir;
        tree.root = top;
        let mut mounts = vec![
            mount(WORKDIR, Ino::Run(workdir)),
            mount(TMPDIR, Ino::Run(tmp)),
            mount("/", Ino::Run(top)),
        ];
        if let Some(layer) = layer {
            mounts.extend(layer.mounts.iter().map(|(at, root)| mount(at, Ino::Layer(*root))));
            tree.layer = layer;
        }
        Fs {
            tree: Arc::new(Mutex::new(tree)),
            mounts: Arc::new(mounts),
        }
    }

    /// The same without any directory for the guest to see (no preopens):
    /// what a run costs without the filesystem, for `cargo xtask bench`.
    pub fn unmounted(self) -> Fs {
        Fs {
            tree: self.tree,
            mounts: Arc::new(Vec::new()),
        }
    }

    /// The preopened directories, in order (`/sandbox` first).
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The tree, locked (a run's calls come one at a time; the lock is
    /// never contended).
    pub fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The working directory as a base.
    pub fn workdir(&self) -> Base {
        self.lock().workdir_base()
    }
}

impl Tree {
    fn workdir_base(&self) -> Base {
        Base::of(WORKDIR, Ino::Run(self.workdir))
    }

    fn now(&self) -> Time {
        let d = self.clock.now();
        Time {
            seconds: d.as_secs(),
            nanoseconds: d.subsec_nanos(),
        }
    }

    fn alloc(&mut self, body: Body) -> u32 {
        let now = self.now();
        let node = Node {
            body,
            atime: now,
            mtime: now,
            ctime: now,
            linked: true,
            holds: 0,
            changed: true,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    fn node(&self, i: u32) -> Result<&Node> {
        self.nodes
            .get(i as usize)
            .and_then(Option::as_ref)
            .ok_or(ErrorCode::BadDescriptor)
    }

    fn node_mut(&mut self, i: u32) -> Result<&mut Node> {
        self.nodes
            .get_mut(i as usize)
            .and_then(Option::as_mut)
            .ok_or(ErrorCode::BadDescriptor)
    }

    fn run(ino: Ino) -> Result<u32> {
        match ino {
            Ino::Run(i) => Ok(i),
            Ino::Layer(_) => Err(ErrorCode::ReadOnly),
        }
    }

    fn dir_entries(&self, ino: Ino) -> Result<Vec<(String, Ino)>> {
        match ino {
            Ino::Run(i) => match &self.node(i)?.body {
                Body::Dir(e) => Ok(e.iter().map(|(n, &i)| (n.clone(), Ino::Run(i))).collect()),
                Body::File(_) => Err(ErrorCode::NotDirectory),
            },
            Ino::Layer(i) => match self.layer.nodes.get(i as usize) {
                Some(LayerNode::Dir(e)) => Ok(e.iter().map(|(n, &i)| (n.clone(), Ino::Layer(i))).collect()),
                Some(LayerNode::File(_)) => Err(ErrorCode::NotDirectory),
                None => Err(ErrorCode::BadDescriptor),
            },
        }
    }

    fn lookup(&self, dir: Ino, name: &str) -> Result<Option<Ino>> {
        match dir {
            Ino::Run(i) => match &self.node(i)?.body {
                Body::Dir(e) => Ok(e.get(name).map(|&i| Ino::Run(i))),
                Body::File(_) => Err(ErrorCode::NotDirectory),
            },
            Ino::Layer(i) => match self.layer.nodes.get(i as usize) {
                Some(LayerNode::Dir(e)) => Ok(e.get(name).map(|&i| Ino::Layer(i))),
                Some(LayerNode::File(_)) => Err(ErrorCode::NotDirectory),
                None => Err(ErrorCode::BadDescriptor),
            },
        }
    }

    /// The kind of `ino`.
    pub fn kind(&self, ino: Ino) -> Result<Kind> {
        Ok(match ino {
            Ino::Run(i) => match self.node(i)?.body {
                Body::File(_) => Kind::File,
                Body::Dir(_) => Kind::Dir,
            },
            Ino::Layer(i) => match self.layer.nodes.get(i as usize) {
                Some(LayerNode::File(_)) => Kind::File,
                Some(LayerNode::Dir(_)) => Kind::Dir,
                None => return Err(ErrorCode::BadDescriptor),
            },
        })
    }

    /// Walks `path` from `base`. `..` pops what the walk entered and never
    /// goes above `base`; symlinks do not exist, so nothing else redirects.
    fn find(&self, base: Base, path: &str) -> Result<Found> {
        if path.is_empty() {
            return Err(ErrorCode::NoEntry);
        }
        if path.starts_with('/') {
            return Err(ErrorCode::NotPermitted);
        }
        if path.contains('\0') {
            return Err(ErrorCode::IllegalByteSequence);
        }
        let trailing_slash = path.ends_with('/');
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        // The directories entered, each with its base for path quotas.
        let mut stack: Vec<Base> = vec![base];
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let here = *stack.last().unwrap_or(&base);
            if *part == ".." {
                if stack.len() == 1 {
                    return Err(ErrorCode::NotPermitted);
                }
                stack.pop();
                continue;
            }
            if part.len() > runbox_api::files::MAX_NAME_BYTES {
                return Err(ErrorCode::NameTooLong);
            }
            match self.lookup(here.ino, part)? {
                Some(ino) => {
                    let at = Base {
                        ino,
                        depth: here.depth + 1,
                        path_bytes: here.path_bytes + 1 + part.len() as u64,
                    };
                    if !last && self.kind(ino)? != Kind::Dir {
                        return Err(ErrorCode::NotDirectory);
                    }
                    if last && trailing_slash && self.kind(ino)? != Kind::Dir {
                        return Err(ErrorCode::NotDirectory);
                    }
                    stack.push(at);
                }
                None if last => {
                    return Ok(Found::Missing {
                        dir: Self::run(here.ino)?,
                        name: (*part).to_owned(),
                        at: here,
                    });
                }
                None => return Err(ErrorCode::NoEntry),
            }
        }
        let at = *stack.last().unwrap_or(&base);
        Ok(Found::Node(at.ino, at))
    }

    /// The node at `path` from `base`.
    pub fn resolve(&self, base: Base, path: &str) -> Result<Base> {
        match self.find(base, path)? {
            Found::Node(_, at) => Ok(at),
            Found::Missing { .. } => Err(ErrorCode::NoEntry),
        }
    }

    /// The parent directory and last name of `path`, for operations on an
    /// entry (unlink, rmdir, rename); `.`/`..`/the base itself are refused.
    fn entry(&self, base: Base, path: &str) -> Result<(u32, String, Base)> {
        let trimmed = path.trim_end_matches('/');
        let (dir_path, name) = match trimmed.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", trimmed),
        };
        if name.is_empty() {
            return Err(if path.is_empty() {
                ErrorCode::NoEntry
            } else {
                ErrorCode::Busy
            });
        }
        if name == "." || name == ".." {
            return Err(ErrorCode::Invalid);
        }
        let dir = if dir_path.is_empty() {
            base
        } else {
            self.resolve(base, dir_path)?
        };
        if self.kind(dir.ino)? != Kind::Dir {
            return Err(ErrorCode::NotDirectory);
        }
        // An entry of the layer is never ours to change (`EROFS`).
        Ok((Self::run(dir.ino)?, name.to_owned(), dir))
    }

    /// Entries may be made in `dir` (not `/`).
    fn check_parent(&self, dir: u32) -> Result<()> {
        if dir == self.root {
            return Err(ErrorCode::Access);
        }
        Ok(())
    }

    fn check_path(&self, at: Base, name: &str) -> Result<()> {
        if name.len() > runbox_api::files::MAX_NAME_BYTES
            || at.path_bytes + 1 + name.len() as u64 > self.limits.path_bytes
            || at.depth + 1 > self.limits.depth
        {
            return Err(ErrorCode::NameTooLong);
        }
        Ok(())
    }

    /// Charges a new entry named `name`: one node and its name's bytes.
    fn charge_entry(&mut self, name: &str) -> Result<()> {
        if self.count + 1 > self.limits.count || self.bytes + name.len() as u64 > self.limits.bytes {
            return Err(ErrorCode::InsufficientSpace);
        }
        self.count += 1;
        self.bytes += name.len() as u64;
        Ok(())
    }

    fn insert(&mut self, dir: u32, name: String, child: u32) -> Result<()> {
        if dir == self.root {
            return Err(ErrorCode::Access);
        }
        let now = self.now();
        let parent = self.node_mut(dir)?;
        match &mut parent.body {
            Body::Dir(e) => {
                e.insert(name, child);
            }
            Body::File(_) => return Err(ErrorCode::NotDirectory),
        }
        parent.mtime = now;
        parent.ctime = now;
        Ok(())
    }

    /// Creates a directory at `path`.
    pub fn mkdir(&mut self, base: Base, path: &str) -> Result<()> {
        match self.find(base, path)? {
            Found::Node(..) => Err(ErrorCode::Exist),
            Found::Missing { dir, name, at } => {
                self.check_parent(dir)?;
                self.check_path(at, &name)?;
                self.charge_entry(&name)?;
                let child = self.alloc(Body::Dir(BTreeMap::new()));
                self.insert(dir, name, child)
            }
        }
    }

    /// Opens (and maybe creates or truncates) `path`; the caller holds the
    /// result and must [`Tree::release`] it. The descriptor quota is
    /// counted here.
    pub fn open(&mut self, base: Base, path: &str, how: OpenHow) -> Result<Base> {
        if self.open + 1 > self.limits.open {
            return Err(ErrorCode::Quota);
        }
        let at = match self.find(base, path)? {
            Found::Node(ino, at) => {
                if how.create && how.exclusive {
                    return Err(ErrorCode::Exist);
                }
                let kind = self.kind(ino)?;
                if how.directory && kind != Kind::Dir {
                    return Err(ErrorCode::NotDirectory);
                }
                if kind == Kind::Dir && (how.write || how.truncate) {
                    return Err(ErrorCode::IsDirectory);
                }
                if (how.write || how.truncate) && matches!(ino, Ino::Layer(_)) {
                    return Err(ErrorCode::ReadOnly);
                }
                if how.truncate {
                    self.set_size(ino, 0)?;
                }
                at
            }
            Found::Missing { dir, name, at } => {
                if !how.create {
                    return Err(ErrorCode::NoEntry);
                }
                if how.directory {
                    // `O_CREAT | O_DIRECTORY` makes nothing on Linux either.
                    return Err(ErrorCode::NoEntry);
                }
                self.check_parent(dir)?;
                self.check_path(at, &name)?;
                self.charge_entry(&name)?;
                let child = self.alloc(Body::File(Vec::new()));
                let len = name.len() as u64;
                self.insert(dir, name, child)?;
                Base {
                    ino: Ino::Run(child),
                    depth: at.depth + 1,
                    path_bytes: at.path_bytes + 1 + len,
                }
            }
        };
        self.hold(at.ino)?;
        self.open += 1;
        Ok(at)
    }

    /// Takes a hold on `ino` (a stream reading or writing it).
    pub fn hold(&mut self, ino: Ino) -> Result<()> {
        if let Ino::Run(i) = ino {
            self.node_mut(i)?.holds += 1;
        }
        Ok(())
    }

    /// Drops a hold taken by [`Tree::hold`]; an unlinked node with no
    /// holds left is freed, and its bytes with it.
    pub fn unhold(&mut self, ino: Ino) {
        let Ino::Run(i) = ino else { return };
        let Ok(node) = self.node_mut(i) else { return };
        node.holds = node.holds.saturating_sub(1);
        if !node.linked && node.holds == 0 {
            self.free_node(i);
        }
    }

    /// Drops a descriptor opened by [`Tree::open`].
    pub fn release(&mut self, ino: Ino) {
        self.open = self.open.saturating_sub(1);
        self.unhold(ino);
    }

    fn free_node(&mut self, i: u32) {
        if let Some(node) = self.nodes.get_mut(i as usize).and_then(Option::take) {
            if let Body::File(data) = &node.body {
                self.bytes = self.bytes.saturating_sub(data.len() as u64);
            }
            self.count = self.count.saturating_sub(1);
            self.free.push(i);
        }
    }

    /// Removes the entry `name` from `dir`, and the node when nothing holds it.
    fn detach(&mut self, dir: u32, name: &str) -> Result<u32> {
        if dir == self.root {
            return Err(ErrorCode::Access);
        }
        let now = self.now();
        let parent = self.node_mut(dir)?;
        let Body::Dir(e) = &mut parent.body else {
            return Err(ErrorCode::NotDirectory);
        };
        let child = e.remove(name).ok_or(ErrorCode::NoEntry)?;
        parent.mtime = now;
        parent.ctime = now;
        self.bytes = self.bytes.saturating_sub(name.len() as u64);
        Ok(child)
    }

    fn drop_unlinked(&mut self, child: u32) {
        if let Ok(node) = self.node_mut(child) {
            node.linked = false;
            if node.holds == 0 {
                self.free_node(child);
            }
        }
    }

    /// `unlink`: files only (a directory is `EISDIR`, as on Linux).
    pub fn unlink(&mut self, base: Base, path: &str) -> Result<()> {
        let (dir, name, at) = self.entry(base, path)?;
        let target = self.lookup(at.ino, &name)?.ok_or(ErrorCode::NoEntry)?;
        if self.kind(target)? == Kind::Dir {
            return Err(ErrorCode::IsDirectory);
        }
        if path.ends_with('/') {
            return Err(ErrorCode::NotDirectory);
        }
        let child = self.detach(dir, &name)?;
        self.drop_unlinked(child);
        Ok(())
    }

    /// `rmdir`: empty directories only.
    pub fn rmdir(&mut self, base: Base, path: &str) -> Result<()> {
        let (dir, name, at) = self.entry(base, path)?;
        let target = self.lookup(at.ino, &name)?.ok_or(ErrorCode::NoEntry)?;
        if self.kind(target)? != Kind::Dir {
            return Err(ErrorCode::NotDirectory);
        }
        if !self.dir_entries(target)?.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        let child = self.detach(dir, &name)?;
        self.drop_unlinked(child);
        Ok(())
    }

    /// The deepest and longest path below `ino`, relative to it.
    fn reach(&self, ino: u32) -> (u64, u64) {
        let Ok(node) = self.node(ino) else { return (0, 0) };
        let Body::Dir(e) = &node.body else { return (0, 0) };
        e.iter()
            .map(|(name, &child)| {
                let (d, l) = self.reach(child);
                (d + 1, l + 1 + name.len() as u64)
            })
            .fold((0, 0), |(d, l), (d2, l2)| (d.max(d2), l.max(l2)))
    }

    /// Whether `target` is `at` or below it (directories keep no parent
    /// link, so the search goes down).
    fn contains(&self, at: u32, target: u32) -> bool {
        if at == target {
            return true;
        }
        match self.node(at).map(|n| &n.body) {
            Ok(Body::Dir(e)) => e.values().any(|&c| self.contains(c, target)),
            _ => false,
        }
    }

    /// `rename`, POSIX style: replaces a file by a file and an empty
    /// directory by a directory; never moves a directory into itself.
    pub fn rename(&mut self, from: Base, old: &str, to: Base, new: &str) -> Result<()> {
        let (old_dir, old_name, old_at) = self.entry(from, old)?;
        let (new_dir, new_name, new_at) = self.entry(to, new)?;
        let moving = self.lookup(old_at.ino, &old_name)?.ok_or(ErrorCode::NoEntry)?;
        self.check_parent(old_dir)?;
        self.check_parent(new_dir)?;
        let moving_i = Self::run(moving)?;
        let kind = self.kind(moving)?;
        if kind == Kind::File && (old.ends_with('/') || new.ends_with('/')) {
            return Err(ErrorCode::NotDirectory);
        }
        if old_dir == new_dir && old_name == new_name {
            return Ok(());
        }
        if kind == Kind::Dir && self.contains(moving_i, new_dir) {
            return Err(ErrorCode::Invalid);
        }
        let (reach_depth, reach_len) = self.reach(moving_i);
        self.check_path(new_at, &new_name)?;
        if new_at.depth + 1 + reach_depth > self.limits.depth
            || new_at.path_bytes + 1 + new_name.len() as u64 + reach_len > self.limits.path_bytes
        {
            return Err(ErrorCode::NameTooLong);
        }
        let replaced = self.lookup(new_at.ino, &new_name)?;
        if let Some(target) = replaced {
            match (kind, self.kind(target)?) {
                (Kind::File, Kind::Dir) => return Err(ErrorCode::IsDirectory),
                (Kind::Dir, Kind::File) => return Err(ErrorCode::NotDirectory),
                (Kind::Dir, Kind::Dir) if !self.dir_entries(target)?.is_empty() => {
                    return Err(ErrorCode::NotEmpty);
                }
                _ => {}
            }
        }
        let name_delta = new_name.len() as i64 - old_name.len() as i64;
        let replaced_name = if replaced.is_some() {
            new_name.len() as i64
        } else {
            0
        };
        if name_delta - replaced_name > 0
            && self.bytes + (name_delta - replaced_name) as u64 > self.limits.bytes
        {
            return Err(ErrorCode::InsufficientSpace);
        }
        if replaced.is_some() {
            let gone = self.detach(new_dir, &new_name)?;
            self.drop_unlinked(gone);
        }
        self.detach(old_dir, &old_name)?;
        self.bytes += new_name.len() as u64;
        self.insert(new_dir, new_name, moving_i)?;
        let now = self.now();
        let node = self.node_mut(moving_i)?;
        node.ctime = now;
        mark_changed(self, moving_i);
        Ok(())
    }

    /// `stat` of a node.
    pub fn stat(&self, ino: Ino) -> Result<Stat> {
        match ino {
            Ino::Run(i) => {
                let n = self.node(i)?;
                let (kind, size) = match &n.body {
                    Body::File(d) => (Kind::File, d.len() as u64),
                    Body::Dir(_) => (Kind::Dir, 0),
                };
                Ok(Stat {
                    kind,
                    size,
                    links: u64::from(n.linked),
                    atime: n.atime,
                    mtime: n.mtime,
                    ctime: n.ctime,
                })
            }
            Ino::Layer(i) => {
                let (kind, size) = match self.layer.nodes.get(i as usize) {
                    Some(LayerNode::File(b)) => (Kind::File, b.len() as u64),
                    Some(LayerNode::Dir(_)) => (Kind::Dir, 0),
                    None => return Err(ErrorCode::BadDescriptor),
                };
                Ok(Stat {
                    kind,
                    size,
                    links: 1,
                    atime: Time::default(),
                    mtime: Time::default(),
                    ctime: Time::default(),
                })
            }
        }
    }

    /// Sets the access and modification times (`None`: unchanged).
    pub fn set_times(&mut self, ino: Ino, atime: Option<Time>, mtime: Option<Time>) -> Result<()> {
        let now = self.now();
        let n = self.node_mut(Self::run(ino)?)?;
        if let Some(t) = atime {
            n.atime = t;
        }
        if let Some(t) = mtime {
            n.mtime = t;
        }
        n.ctime = now;
        Ok(())
    }

    /// The current time, as `set-times(now)` sets it.
    pub fn time_now(&self) -> Time {
        self.now()
    }

    /// Entries of a directory with their kinds, in name order.
    pub fn list(&self, ino: Ino) -> Result<Vec<(String, Kind)>> {
        self.dir_entries(ino)?
            .into_iter()
            .map(|(name, child)| Ok((name, self.kind(child)?)))
            .collect()
    }

    /// Up to `len` bytes of a file from `offset`, and whether they reach its end.
    pub fn read(&self, ino: Ino, offset: u64, len: u64) -> Result<(Vec<u8>, bool)> {
        let data: &[u8] = match ino {
            Ino::Run(i) => match &self.node(i)?.body {
                Body::File(d) => d,
                Body::Dir(_) => return Err(ErrorCode::IsDirectory),
            },
            Ino::Layer(i) => match self.layer.nodes.get(i as usize) {
                Some(LayerNode::File(b)) => b,
                Some(LayerNode::Dir(_)) => return Err(ErrorCode::IsDirectory),
                None => return Err(ErrorCode::BadDescriptor),
            },
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(data.len());
        Ok((data[start..end].to_vec(), end == data.len()))
    }

    /// Grows a file's charge from `old` to `new` bytes, or says which quota
    /// forbids it.
    fn charge_size(&mut self, old: u64, new: u64) -> Result<()> {
        if new > self.limits.file_bytes {
            return Err(ErrorCode::FileTooLarge);
        }
        if new > old && self.bytes + (new - old) > self.limits.bytes {
            return Err(ErrorCode::InsufficientSpace);
        }
        if new >= old {
            self.bytes += new - old;
        } else {
            self.bytes = self.bytes.saturating_sub(old - new);
        }
        Ok(())
    }

    fn file_mut(&mut self, i: u32) -> Result<&mut Vec<u8>> {
        match &mut self.node_mut(i)?.body {
            Body::File(d) => Ok(d),
            Body::Dir(_) => Err(ErrorCode::IsDirectory),
        }
    }

    fn touch(&mut self, i: u32) {
        let now = self.now();
        if let Ok(n) = self.node_mut(i) {
            n.mtime = now;
            n.ctime = now;
            n.changed = true;
        }
    }

    /// Bytes a write at `position` (`None`: the end) may still add under
    /// `file_bytes` and `bytes`, or the quota that leaves none.
    pub fn room(&self, ino: Ino, position: Option<u64>) -> Result<u64> {
        let size = match &self.node(Self::run(ino)?)?.body {
            Body::File(d) => d.len() as u64,
            Body::Dir(_) => return Err(ErrorCode::IsDirectory),
        };
        let at = position.unwrap_or(size);
        let by_total = size + self.limits.bytes.saturating_sub(self.bytes);
        let end = self.limits.file_bytes.min(by_total);
        match end.checked_sub(at) {
            Some(room) if room > 0 => Ok(room),
            _ if at >= self.limits.file_bytes => Err(ErrorCode::FileTooLarge),
            _ => Err(ErrorCode::InsufficientSpace),
        }
    }

    /// `ftruncate`: grows with zeros (counted) or shrinks.
    pub fn set_size(&mut self, ino: Ino, size: u64) -> Result<()> {
        let i = Self::run(ino)?;
        let old = self.file_mut(i)?.len() as u64;
        self.charge_size(old, size)?;
        let data = self.file_mut(i)?;
        let new = usize::try_from(size).map_err(|_| ErrorCode::FileTooLarge)?;
        if new > data.len() {
            data.try_reserve_exact(new - data.len())
                .map_err(|_| ErrorCode::InsufficientMemory)?;
        }
        data.resize(new, 0);
        self.touch(i);
        Ok(())
    }

    /// Writes `buf` at `offset` (`None`: at the end), filling a gap with
    /// zeros; returns the bytes written (all of them, or an error).
    pub fn write(&mut self, ino: Ino, offset: Option<u64>, buf: &[u8]) -> Result<u64> {
        let i = Self::run(ino)?;
        let old = self.file_mut(i)?.len() as u64;
        let at = offset.unwrap_or(old);
        let end = at.checked_add(buf.len() as u64).ok_or(ErrorCode::FileTooLarge)?;
        if end > old {
            self.charge_size(old, end)?;
        }
        let data = self.file_mut(i)?;
        let (at, end) = (
            usize::try_from(at).map_err(|_| ErrorCode::FileTooLarge)?,
            usize::try_from(end).map_err(|_| ErrorCode::FileTooLarge)?,
        );
        if end > data.len() {
            data.try_reserve_exact(end - data.len())
                .map_err(|_| ErrorCode::InsufficientMemory)?;
            data.resize(end, 0);
        }
        data[at..end].copy_from_slice(buf);
        self.touch(i);
        Ok(buf.len() as u64)
    }

    /// A number naming `ino` within this run (for `metadata-hash`).
    pub fn identity(ino: Ino) -> u64 {
        match ino {
            Ino::Run(i) => u64::from(i),
            Ino::Layer(i) => (1 << 32) | u64::from(i),
        }
    }

    /// Places an input file at `path` under the working directory (making
    /// its directories), charged like any other; it counts as unchanged.
    pub fn put(&mut self, path: &str, content: &[u8]) -> Result<()> {
        let mut at = self.workdir_base();
        let parts: Vec<&str> = path.split('/').collect();
        let Some((name, dirs)) = parts.split_last() else {
            return Err(ErrorCode::Invalid);
        };
        for dir in dirs {
            at = match self.find(at, dir)? {
                Found::Node(ino, b) if self.kind(ino)? == Kind::Dir => b,
                Found::Node(..) => return Err(ErrorCode::NotDirectory),
                Found::Missing {
                    dir: parent,
                    name,
                    at: here,
                } => {
                    self.check_path(here, &name)?;
                    self.charge_entry(&name)?;
                    let child = self.alloc(Body::Dir(BTreeMap::new()));
                    self.node_mut(child)?.changed = false;
                    self.insert(parent, name.clone(), child)?;
                    Base {
                        ino: Ino::Run(child),
                        depth: here.depth + 1,
                        path_bytes: here.path_bytes + 1 + name.len() as u64,
                    }
                }
            };
        }
        let file = self.open(
            at,
            name,
            OpenHow {
                create: true,
                exclusive: true,
                write: true,
                ..OpenHow::default()
            },
        )?;
        let written = self.write(file.ino, Some(0), content);
        self.release(file.ino);
        written?;
        if let Ino::Run(i) = file.ino {
            self.node_mut(i)?.changed = false;
        }
        Ok(())
    }

    /// Files under the working directory the run created, wrote or moved,
    /// by path (relative, `/`-separated), with their contents.
    pub fn changed_files(&self) -> Vec<(String, &[u8])> {
        fn walk<'t>(tree: &'t Tree, dir: u32, prefix: &str, out: &mut Vec<(String, &'t [u8])>) {
            let Ok(Node {
                body: Body::Dir(e), ..
            }) = tree.node(dir)
            else {
                return;
            };
            for (name, &child) in e {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                match tree.node(child) {
                    Ok(Node {
                        body: Body::File(data),
                        changed: true,
                        ..
                    }) => out.push((path, data)),
                    Ok(Node {
                        body: Body::Dir(_), ..
                    }) => walk(tree, child, &path, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(self, self.workdir, "", &mut out);
        out
    }

    /// Bytes stored, nodes alive, descriptors open (for tests and metrics).
    pub fn usage(&self) -> (u64, u64, u64) {
        (self.bytes, self.count, self.open)
    }
}

/// Marks a moved node, and every file below a moved directory, as changed:
/// they are at new paths.
fn mark_changed(tree: &mut Tree, i: u32) {
    let children: Vec<u32> = match tree.node_mut(i) {
        Ok(n) => {
            n.changed = true;
            match &n.body {
                Body::Dir(e) => e.values().copied().collect(),
                Body::File(_) => Vec::new(),
            }
        }
        Err(_) => Vec::new(),
    };
    for c in children {
        mark_changed(tree, c);
    }
}

#[cfg(test)]
mod tests;

/// `code` as the `strerror` a guest would see, for messages about input files.
pub fn describe(code: ErrorCode) -> String {
    match code {
        ErrorCode::InsufficientSpace => "the files exceed `files_bytes` or `files_count`".to_owned(),
        ErrorCode::FileTooLarge => "it is larger than `file_bytes`".to_owned(),
        ErrorCode::NameTooLong => "its path exceeds `path_bytes` or `path_depth`".to_owned(),
        ErrorCode::Exist => "a file or directory of that name exists".to_owned(),
        ErrorCode::NotDirectory => "a file stands where a directory of its path would be".to_owned(),
        other => format!("{other:?}"),
    }
}
