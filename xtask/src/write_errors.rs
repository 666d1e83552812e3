//! Exact errnos for failed writes in the `python` guest.
//!
//! componentize-py 0.25.1 links CPython against a wasm32-wasip2 wasi-libc
//! whose `write()` puts bytes on the file's `wasi:io/streams` output stream
//! and turns any stream failure into `EIO`: it never asks
//! `wasi:filesystem/types.filesystem-error-code` (the component does not
//! even import it). So a write past a quota, which the host refuses with
//! `insufficient-space` or `file-too-large`, reached Python as `EIO`.
//! A positioned write (`pwrite`, `descriptor.write`) carries the host's
//! error code and libc translates it exactly.
//!
//! This pass gives the component's libc a `write` that, when the stream
//! write fails with `EIO`, asks again with a `pwrite` of the first byte at
//! the descriptor's position: the host refuses it for the same reason (a
//! stream write fails only with no room at its position, the quotas are
//! the same for both paths, nothing was written by the failed call, and a
//! run is single-threaded), and `errno` is then the exact one.
//! Where there is no position (`lseek` fails: stdout, stderr, pipes) the
//! `EIO` stands. Should the `pwrite` succeed after all, its count is
//! returned and the position moved past it, as a write would. The export
//! `write` of the libc module is pointed at the new function, which calls
//! the old one: every other module imports `write` from that export.
//!
//! The pass checks what it relies on (one core module exporting `write`,
//! `pwrite`, `lseek` and `__errno_location` with the signatures of
//! wasm32 wasi-libc) and fails the guest build otherwise, so a
//! componentize-py update that changes them is noticed, not patched blindly.
//! Nothing else in the component changes: the module's other sections are
//! copied byte for byte, and the component's other sections too.

use std::ops::Range;

use anyhow::{Context, Result, bail, ensure};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    CodeSection, ComponentSectionId, Encode, ExportSection, Function, FunctionSection, Instruction, MemArg,
    Module, RawSection, ValType,
};
use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef};

/// wasi-libc's values (`__WASI_ERRNO_IO`, `SEEK_SET`, `SEEK_CUR`).
const EIO: i32 = 29;
const SEEK_SET: i32 = 0;
const SEEK_CUR: i32 = 1;

/// Returns `component` with its libc's `write` reporting exact errnos.
pub fn patch(component: &[u8]) -> Result<Vec<u8>> {
    let mut libc = None;
    for payload in Parser::new(0).parse_all(component) {
        if let Payload::ModuleSection { unchecked_range, .. } = payload? {
            let range = span(unchecked_range)?;
            if is_libc(&component[range.clone()])? {
                ensure!(libc.is_none(), "two core modules look like the libc");
                libc = Some(range);
            }
        }
    }
    let range = libc.context("no core module of the guest is a wasip2 wasi-libc exporting `write`")?;
    let patched = patch_module(&component[range.clone()])?;
    replace_module_section(component, range, &patched)
}

fn span(range: Range<u64>) -> Result<Range<usize>> {
    Ok(usize::try_from(range.start)?..usize::try_from(range.end)?)
}

/// Whether `module` is the libc: it exports `write` and imports the host's
/// positioned write. (componentize-py's main module exports a `write` too,
/// a trampoline through the function table to the libc's, which the
/// linker's init module fills from the libc's export.)
fn is_libc(module: &[u8]) -> Result<bool> {
    let (mut exports_write, mut imports_pwrite) = (false, false);
    for payload in Parser::new(0).parse_all(module) {
        match payload? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import?;
                    imports_pwrite |= import.module.starts_with("wasi:filesystem/types@")
                        && import.name == "[method]descriptor.write";
                }
            }
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export?;
                    exports_write |= export.name == "write" && export.kind == ExternalKind::Func;
                }
            }
            _ => {}
        }
    }
    Ok(exports_write && imports_pwrite)
}

/// The component with the module section whose contents are `range`
/// replaced by `module`.
fn replace_module_section(component: &[u8], range: Range<usize>, module: &[u8]) -> Result<Vec<u8>> {
    let mut size = Vec::new();
    range.len().encode(&mut size);
    let header = 1 + size.len();
    let start = range
        .start
        .checked_sub(header)
        .context("a module section header")?;
    ensure!(
        component[start] == ComponentSectionId::CoreModule as u8
            && component[start + 1..range.start] == size[..],
        "the libc module's section header is not where it was expected"
    );
    let mut out = Vec::with_capacity(component.len() + 256);
    out.extend_from_slice(&component[..start]);
    out.push(ComponentSectionId::CoreModule as u8);
    module.len().encode(&mut out);
    out.extend_from_slice(module);
    out.extend_from_slice(&component[range.end..]);
    Ok(out)
}

/// The functions the new `write` calls, by their export names.
struct Libc {
    write: u32,
    pwrite: u32,
    lseek: u32,
    errno_location: u32,
    /// The type index of `write`, which the new function shares.
    write_type: u32,
    /// Imported plus defined functions: the new function's index.
    functions: u32,
}

fn patch_module(module: &[u8]) -> Result<Vec<u8>> {
    let libc = survey(module)?;
    let mut out = Module::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload?;
        match &payload {
            Payload::Version { .. } | Payload::End(_) => {}
            Payload::FunctionSection(reader) => {
                let mut functions = FunctionSection::new();
                for ty in reader.clone() {
                    functions.function(ty?);
                }
                functions.function(libc.write_type);
                out.section(&functions);
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader.clone() {
                    let export = export?;
                    let kind = RoundtripReencoder.export_kind(export.kind)?;
                    let index = if export.kind == ExternalKind::Func && export.name == "write" {
                        libc.functions
                    } else {
                        export.index
                    };
                    exports.export(export.name, kind, index);
                }
                out.section(&exports);
            }
            Payload::CodeSectionStart { unchecked_range, .. } => {
                out.section(&code_section(&module[span(unchecked_range.clone())?], &libc)?);
            }
            Payload::CodeSectionEntry(_) => {}
            _ => {
                if let Some((id, range)) = payload.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &module[span(range)?],
                    });
                }
            }
        }
    }
    let bytes = out.finish();
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&bytes)
        .context("the patched libc module does not validate")?;
    Ok(bytes)
}

/// The code section's bodies as they were, and the new `write` after them.
fn code_section(section: &[u8], libc: &Libc) -> Result<CodeSection> {
    let mut code = CodeSection::new();
    let reader = wasmparser::CodeSectionReader::new(wasmparser::BinaryReader::new(section, 0))?;
    for body in reader {
        code.raw(&section[span(body?.range())?]);
    }
    code.function(&precise_write(libc));
    Ok(code)
}

/// `ssize_t write(int fd, const void *buf, size_t n)`, asking `pwrite` for
/// the exact errno when the stream write fails with `EIO`.
///
/// ```c
/// ssize_t r = write_stream(fd, buf, n);
/// if (r != -1 || errno != EIO) return r;
/// off_t at = lseek(fd, 0, SEEK_CUR);
/// if (at < 0) { errno = EIO; return -1; }
/// r = pwrite(fd, buf, n != 0, at);
/// if (r < 0) return -1;
/// lseek(fd, at + r, SEEK_SET);
/// return r;
/// ```
fn precise_write(libc: &Libc) -> Function {
    use Instruction as I;
    let (fd, buf, n) = (0, 1, 2);
    let (result, offset, errno) = (3, 4, 5);
    let mut f = Function::new([(1, ValType::I32), (1, ValType::I64), (1, ValType::I32)]);
    let store = MemArg {
        offset: 0,
        align: 2,
        target: wasm_encoder::MemArgTarget::Memory(0),
        ordering: None,
    };
    for i in [
        // r = write(fd, buf, n); a success, or another errno, stands.
        I::LocalGet(fd),
        I::LocalGet(buf),
        I::LocalGet(n),
        I::Call(libc.write),
        I::LocalTee(result),
        I::I32Const(-1),
        I::I32Ne,
        I::If(wasm_encoder::BlockType::Empty),
        I::LocalGet(result),
        I::Return,
        I::End,
        I::Call(libc.errno_location),
        I::LocalTee(errno),
        I::I32Load(store),
        I::I32Const(EIO),
        I::I32Ne,
        I::If(wasm_encoder::BlockType::Empty),
        I::I32Const(-1),
        I::Return,
        I::End,
        // No position (a pipe, stdout): EIO stands.
        I::LocalGet(fd),
        I::I64Const(0),
        I::I32Const(SEEK_CUR),
        I::Call(libc.lseek),
        I::LocalTee(offset),
        I::I64Const(0),
        I::I64LtS,
        I::If(wasm_encoder::BlockType::Empty),
        I::LocalGet(errno),
        I::I32Const(EIO),
        I::I32Store(store),
        I::I32Const(-1),
        I::Return,
        I::End,
        // The first of the bytes at the same place: refused for the same
        // reason (no room there), with the host's own error code, which
        // sets errno exactly. One byte, not all: a positioned write is
        // all or nothing, so a longer one could fail for a quota the
        // stream never reached (the file's size past a full disk).
        I::LocalGet(fd),
        I::LocalGet(buf),
        I::LocalGet(n),
        I::I32Const(0),
        I::I32Ne,
        I::LocalGet(offset),
        I::Call(libc.pwrite),
        I::LocalTee(result),
        I::I32Const(0),
        I::I32LtS,
        I::If(wasm_encoder::BlockType::Empty),
        I::I32Const(-1),
        I::Return,
        I::End,
        // Taken after all: past it, as a write would have moved.
        I::LocalGet(fd),
        I::LocalGet(offset),
        I::LocalGet(result),
        I::I64ExtendI32U,
        I::I64Add,
        I::I32Const(SEEK_SET),
        I::Call(libc.lseek),
        I::Drop,
        I::LocalGet(result),
        I::End,
    ] {
        f.instruction(&i);
    }
    f
}

/// Finds the functions [`precise_write`] calls and checks their types.
fn survey(module: &[u8]) -> Result<Libc> {
    let mut types: Vec<FuncType> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut exports = std::collections::HashMap::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload? {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    types.push(ty?);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let TypeRef::Func(ty) | TypeRef::FuncExact(ty) = import?.ty {
                        func_types.push(ty);
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    if export.kind == ExternalKind::Func {
                        exports.insert(export.name.to_string(), export.index);
                    }
                }
            }
            _ => {}
        }
    }
    use wasmparser::ValType as V;
    let find = |name: &str, params: &[V], results: &[V]| -> Result<(u32, u32)> {
        let index = *exports
            .get(name)
            .with_context(|| format!("libc exports no `{name}`"))?;
        let ty = *func_types
            .get(index as usize)
            .with_context(|| format!("`{name}` has no type"))?;
        let actual = types.get(ty as usize).context("a function type")?;
        if actual.params() != params || actual.results() != results {
            bail!("libc's `{name}` has the type {actual}, not the one wasm32 wasi-libc gives it");
        }
        Ok((index, ty))
    };
    let (write, write_type) = find("write", &[V::I32, V::I32, V::I32], &[V::I32])?;
    let (pwrite, _) = find("pwrite", &[V::I32, V::I32, V::I32, V::I64], &[V::I32])?;
    let (lseek, _) = find("lseek", &[V::I32, V::I64, V::I32], &[V::I64])?;
    let (errno_location, _) = find("__errno_location", &[], &[V::I32])?;
    Ok(Libc {
        write,
        pwrite,
        lseek,
        errno_location,
        write_type,
        functions: u32::try_from(func_types.len())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{EntityType, ExportKind, ImportSection, TypeSection};

    /// A module shaped like the libc: imports (a function, so indices are
    /// offset, and the memory),
    /// the four functions, `write` exported; `lseek` of the given params.
    fn libc(lseek: &[ValType]) -> Vec<u8> {
        use ValType::{I32, I64};
        let mut types = TypeSection::new();
        types.ty().function([I32, I32, I32], [I32]);
        types.ty().function([I32, I32, I32, I64], [I32]);
        types.ty().function(lseek.iter().copied(), [I64]);
        types.ty().function([], [I32]);
        let mut imports = ImportSection::new();
        imports.import("env", "other", EntityType::Function(3));
        let memory = wasm_encoder::MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        };
        imports.import("env", "memory", EntityType::Memory(memory));
        let mut functions = FunctionSection::new();
        let mut exports = ExportSection::new();
        let mut code = CodeSection::new();
        for (i, name) in ["write", "pwrite", "lseek", "__errno_location"]
            .into_iter()
            .enumerate()
        {
            functions.function(i as u32);
            exports.export(name, ExportKind::Func, i as u32 + 1);
            let mut body = Function::new([]);
            body.instruction(&Instruction::Unreachable)
                .instruction(&Instruction::End);
            code.function(&body);
        }
        let mut module = Module::new();
        module
            .section(&types)
            .section(&imports)
            .section(&functions)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    #[test]
    fn write_is_pointed_at_a_new_function_of_its_type() {
        use ValType::{I32, I64};
        let module = libc(&[I32, I64, I32]);
        let before = survey(&module).unwrap();
        assert_eq!((before.write, before.functions), (1, 5));
        let patched = patch_module(&module).unwrap();
        let after = survey(&patched).unwrap();
        assert_eq!((after.write, after.functions), (5, 6));
        assert_eq!(after.write_type, before.write_type);
        assert_eq!((after.pwrite, after.lseek, after.errno_location), (2, 3, 4));
    }

    #[test]
    fn a_libc_of_other_signatures_is_refused() {
        use ValType::I32;
        let err = patch_module(&libc(&[I32, I32, I32])).unwrap_err();
        assert!(format!("{err:#}").contains("`lseek`"), "{err:#}");
    }
}
