//! `wasi:filesystem` (types + preopens) served from [`Fs`], linked in place
//! of wasmtime-wasi's host filesystem (which maps host directories through
//! cap-std); the rest of wasmtime-wasi stays. Streams over files are
//! wasmtime-wasi-io's own stream resources, so `wasi:io/streams` is
//! unchanged.
//!
//! We wrote this rather than take a crate: of those on crates.io, `vfs-host`
//! targets wasmtime 44 and `wasmtime-vfs-memory` the retired wasi-common,
//! and neither has per-run quotas (checked 2026-12).

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::{Base, ErrorCode, Fs, Ino, Kind, OpenHow, Stat, Time};

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "src/sandbox/fs/wit",
        world: "memory-filesystem",
        imports: { default: trappable },
        trappable_error_type: {
            "wasi:filesystem/types.error-code" => super::FsError,
        },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:filesystem/types.descriptor": super::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": super::DirStream,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::filesystem::{preopens, types};
use types::{
    Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, Filesize, MetadataHashValue,
    NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;

/// A failed filesystem call: an error code for the guest, or a host fault
/// that ends the run (a bad resource handle, a full resource table).
#[derive(Debug)]
pub enum FsError {
    Code(ErrorCode),
    Trap(wasmtime::Error),
}

impl From<ErrorCode> for FsError {
    fn from(code: ErrorCode) -> Self {
        FsError::Code(code)
    }
}

impl From<wasmtime::component::ResourceTableError> for FsError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        FsError::Trap(e.into())
    }
}

type FsResult<T> = Result<T, FsError>;

/// An open file or directory.
#[derive(Debug)]
pub struct Descriptor {
    at: Base,
    read: bool,
    write: bool,
    /// A preopen: not counted against the descriptor quota.
    preopen: bool,
}

/// A directory's entries as they were when `read-directory` was called.
#[derive(Debug)]
pub struct DirStream {
    entries: std::vec::IntoIter<(String, Kind)>,
}

/// The store's view for these bindings: the run's tree and its resource table.
pub struct FsView<'a> {
    pub fs: &'a Fs,
    pub table: &'a mut ResourceTable,
}

struct HasFs;

impl HasData for HasFs {
    type Data<'a> = FsView<'a>;
}

/// Replaces wasmtime-wasi's `wasi:filesystem` in `linker` (which must
/// already hold the rest of WASI 0.2) by the in-memory one.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> FsView<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    types::add_to_linker::<T, HasFs>(linker, view)?;
    preopens::add_to_linker::<T, HasFs>(linker, view)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn kind_type(kind: Kind) -> DescriptorType {
    match kind {
        Kind::File => DescriptorType::RegularFile,
        Kind::Dir => DescriptorType::Directory,
    }
}

fn datetime(t: Time) -> Datetime {
    Datetime {
        seconds: t.seconds,
        nanoseconds: t.nanoseconds,
    }
}

fn descriptor_stat(s: Stat) -> DescriptorStat {
    DescriptorStat {
        type_: kind_type(s.kind),
        link_count: s.links,
        size: s.size,
        data_access_timestamp: Some(datetime(s.atime)),
        data_modification_timestamp: Some(datetime(s.mtime)),
        status_change_timestamp: Some(datetime(s.ctime)),
    }
}

impl FsView<'_> {
    fn desc(&self, fd: &Resource<Descriptor>) -> FsResult<&Descriptor> {
        Ok(self.table.get(fd)?)
    }

    /// A directory descriptor to resolve paths from.
    fn dir(&self, fd: &Resource<Descriptor>) -> FsResult<Base> {
        let d = self.desc(fd)?;
        if self.fs.lock().kind(d.at.ino)? != Kind::Dir {
            return Err(ErrorCode::NotDirectory.into());
        }
        Ok(d.at)
    }

    /// A file descriptor opened for writing (`write`) or reading.
    fn file(&self, fd: &Resource<Descriptor>, write: bool) -> FsResult<Ino> {
        let d = self.desc(fd)?;
        if self.fs.lock().kind(d.at.ino)? == Kind::Dir {
            return Err(ErrorCode::IsDirectory.into());
        }
        if !(if write { d.write } else { d.read }) {
            return Err(ErrorCode::BadDescriptor.into());
        }
        Ok(d.at.ino)
    }

    /// A stream over the file of `fd` from `position` (`None`: appending),
    /// holding the file until it is dropped.
    fn stream(
        &mut self,
        fd: &Resource<Descriptor>,
        write: bool,
        position: Option<u64>,
    ) -> FsResult<FileStream> {
        let ino = self.file(fd, write)?;
        self.fs.lock().hold(ino)?;
        Ok(FileStream {
            fs: self.fs.clone(),
            ino,
            position,
        })
    }

    fn new_time(&self, t: NewTimestamp) -> Option<Time> {
        match t {
            NewTimestamp::NoChange => None,
            NewTimestamp::Now => Some(self.fs.lock().time_now()),
            NewTimestamp::Timestamp(d) => Some(Time {
                seconds: d.seconds,
                nanoseconds: d.nanoseconds,
            }),
        }
    }
}

impl types::Host for FsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        match err {
            FsError::Code(code) => Ok(code),
            FsError::Trap(e) => Err(e),
        }
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let err = self.table.get(&err)?;
        Ok(err.downcast_ref::<StreamCode>().map(|c| c.0))
    }
}

impl types::HostDescriptor for FsView<'_> {
    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<wasmtime_wasi::p2::DynInputStream>> {
        let stream: wasmtime_wasi::p2::DynInputStream = Box::new(self.stream(&fd, false, Some(offset))?);
        Ok(self.table.push(stream)?)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        let stream: wasmtime_wasi::p2::DynOutputStream = Box::new(self.stream(&fd, true, Some(offset))?);
        Ok(self.table.push(stream)?)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        let stream: wasmtime_wasi::p2::DynOutputStream = Box::new(self.stream(&fd, true, None)?);
        Ok(self.table.push(stream)?)
    }

    fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        _offset: Filesize,
        _len: Filesize,
        _advice: Advice,
    ) -> FsResult<()> {
        self.desc(&fd)?;
        Ok(())
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.desc(&fd)?;
        Ok(())
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        let d = self.desc(&fd)?;
        let mut flags = DescriptorFlags::empty();
        if d.read {
            flags |= DescriptorFlags::READ;
        }
        if d.write {
            flags |= DescriptorFlags::WRITE;
        }
        if matches!(d.at.ino, Ino::Run(_)) && self.fs.lock().kind(d.at.ino)? == Kind::Dir {
            flags |= DescriptorFlags::MUTATE_DIRECTORY;
        }
        Ok(flags)
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        let ino = self.desc(&fd)?.at.ino;
        Ok(kind_type(self.fs.lock().kind(ino)?))
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        let ino = self.file(&fd, true)?;
        Ok(self.fs.lock().set_size(ino, size)?)
    }

    fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> FsResult<()> {
        let ino = self.desc(&fd)?.at.ino;
        let (a, m) = (self.new_time(atime), self.new_time(mtime));
        Ok(self.fs.lock().set_times(ino, a, m)?)
    }

    fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        let ino = self.file(&fd, false)?;
        Ok(self.fs.lock().read(ino, offset, len)?)
    }

    fn write(&mut self, fd: Resource<Descriptor>, buf: Vec<u8>, offset: Filesize) -> FsResult<Filesize> {
        let ino = self.file(&fd, true)?;
        Ok(self.fs.lock().write(ino, Some(offset), &buf)?)
    }

    fn read_directory(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<DirStream>> {
        let base = self.dir(&fd)?;
        let entries = self.fs.lock().list(base.ino)?;
        Ok(self.table.push(DirStream {
            entries: entries.into_iter(),
        })?)
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.desc(&fd)?;
        Ok(())
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let base = self.dir(&fd)?;
        Ok(self.fs.lock().mkdir(base, &path)?)
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        let ino = self.desc(&fd)?.at.ino;
        Ok(descriptor_stat(self.fs.lock().stat(ino)?))
    }

    fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        _flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        let base = self.dir(&fd)?;
        let tree = self.fs.lock();
        let at = tree.resolve(base, &path)?;
        Ok(descriptor_stat(tree.stat(at.ino)?))
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        _flags: PathFlags,
        path: String,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> FsResult<()> {
        let base = self.dir(&fd)?;
        let (a, m) = (self.new_time(atime), self.new_time(mtime));
        let mut tree = self.fs.lock();
        let at = tree.resolve(base, &path)?;
        Ok(tree.set_times(at.ino, a, m)?)
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        _flags: PathFlags,
        _old: String,
        _new_fd: Resource<Descriptor>,
        _new: String,
    ) -> FsResult<()> {
        self.dir(&fd)?;
        Err(ErrorCode::NotPermitted.into())
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        _path_flags: PathFlags,
        path: String,
        open: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let base = self.dir(&fd)?;
        let how = OpenHow {
            create: open.contains(OpenFlags::CREATE),
            exclusive: open.contains(OpenFlags::EXCLUSIVE),
            directory: open.contains(OpenFlags::DIRECTORY),
            truncate: open.contains(OpenFlags::TRUNCATE),
            write: flags.contains(DescriptorFlags::WRITE),
        };
        let at = self.fs.lock().open(base, &path, how)?;
        let descriptor = Descriptor {
            at,
            read: flags.contains(DescriptorFlags::READ) || !how.write,
            write: how.write,
            preopen: false,
        };
        match self.table.push(descriptor) {
            Ok(fd) => Ok(fd),
            Err(e) => {
                self.fs.lock().release(at.ino);
                Err(e.into())
            }
        }
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        let base = self.dir(&fd)?;
        self.fs.lock().resolve(base, &path)?;
        // Nothing here is a symbolic link.
        Err(ErrorCode::Invalid.into())
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let base = self.dir(&fd)?;
        Ok(self.fs.lock().rmdir(base, &path)?)
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old: String,
        new_fd: Resource<Descriptor>,
        new: String,
    ) -> FsResult<()> {
        let (from, to) = (self.dir(&fd)?, self.dir(&new_fd)?);
        let mut tree = self.fs.lock();
        if matches!(from.ino, Ino::Layer(_)) != matches!(to.ino, Ino::Layer(_)) {
            return Err(ErrorCode::CrossDevice.into());
        }
        Ok(tree.rename(from, &old, to, &new)?)
    }

    fn symlink_at(&mut self, fd: Resource<Descriptor>, _old: String, _new: String) -> FsResult<()> {
        self.dir(&fd)?;
        Err(ErrorCode::NotPermitted.into())
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let base = self.dir(&fd)?;
        Ok(self.fs.lock().unlink(base, &path)?)
    }

    fn is_same_object(&mut self, a: Resource<Descriptor>, b: Resource<Descriptor>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&a)?.at.ino == self.table.get(&b)?.at.ino)
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        let ino = self.desc(&fd)?.at.ino;
        Ok(MetadataHashValue {
            lower: super::Tree::identity(ino),
            upper: 0,
        })
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        _flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        let base = self.dir(&fd)?;
        let at = self.fs.lock().resolve(base, &path)?;
        Ok(MetadataHashValue {
            lower: super::Tree::identity(at.ino),
            upper: 0,
        })
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        let d = self.table.delete(fd)?;
        if !d.preopen {
            self.fs.lock().release(d.at.ino);
        }
        Ok(())
    }
}

impl types::HostDirectoryEntryStream for FsView<'_> {
    fn read_directory_entry(&mut self, stream: Resource<DirStream>) -> FsResult<Option<DirectoryEntry>> {
        let s = self.table.get_mut(&stream)?;
        Ok(s.entries.next().map(|(name, kind)| DirectoryEntry {
            type_: kind_type(kind),
            name,
        }))
    }

    fn drop(&mut self, stream: Resource<DirStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl preopens::Host for FsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let mut out = Vec::new();
        for m in self.fs.mounts() {
            let d = Descriptor {
                at: m.base,
                read: true,
                write: false,
                preopen: true,
            };
            out.push((self.table.push(d)?, m.path.clone()));
        }
        Ok(out)
    }
}

/// The error a file stream reports; `filesystem-error-code` reads it back.
#[derive(Debug)]
struct StreamCode(ErrorCode);

impl std::fmt::Display for StreamCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for StreamCode {}

fn stream_error(code: ErrorCode) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(StreamCode(code)))
}

/// A stream reading or writing a file from a position (`None`: appending).
/// In memory, it is always ready.
struct FileStream {
    fs: Fs,
    ino: Ino,
    position: Option<u64>,
}

/// Largest chunk a stream moves in one call.
const STREAM_CHUNK: usize = 64 << 10;

impl Drop for FileStream {
    fn drop(&mut self) {
        self.fs.lock().unhold(self.ino);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileStream {
    async fn ready(&mut self) {}
}

impl InputStream for FileStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let at = self.position.unwrap_or(0);
        let (data, eof) = self
            .fs
            .lock()
            .read(self.ino, at, size.min(STREAM_CHUNK) as u64)
            .map_err(stream_error)?;
        if data.is_empty() && eof && size > 0 {
            return Err(StreamError::Closed);
        }
        self.position = Some(at + data.len() as u64);
        Ok(Bytes::from(data))
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for FileStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = self
            .fs
            .lock()
            .write(self.ino, self.position, &bytes)
            .map_err(stream_error)?;
        if let Some(p) = &mut self.position {
            *p += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    /// What fits at the stream's position under the quotas: a write
    /// larger than the room left is cut to it (a short write, as on a disk
    /// filling up), and a write with no room left fails with the quota's
    /// code. The `python` guest's libc reports every stream failure as
    /// `EIO` without asking `filesystem-error-code`; its `write` then asks
    /// a positioned write, which carries the code
    /// (`xtask/src/write_errors.rs`). The refusal here and in
    /// [`Tree::write`](crate::sandbox::fs::Tree::write) of one byte at the
    /// same position must agree: both come from the same quotas.
    fn check_write(&mut self) -> StreamResult<usize> {
        let room = self
            .fs
            .lock()
            .room(self.ino, self.position)
            .map_err(stream_error)?;
        Ok(usize::try_from(room).unwrap_or(usize::MAX).min(STREAM_CHUNK))
    }

    /// A flush of a full file succeeds: what was written is stored. Only a
    /// write with no room fails (`check_write`).
    async fn write_ready(&mut self) -> StreamResult<usize> {
        Ok(self.check_write().unwrap_or(0))
    }

    async fn blocking_write_and_flush(&mut self, mut bytes: Bytes) -> StreamResult<()> {
        while !bytes.is_empty() {
            let permit = self.check_write()?;
            let chunk = bytes.split_to(bytes.len().min(permit));
            self.write(chunk)?;
        }
        Ok(())
    }
}
