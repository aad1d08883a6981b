//! The interpreter as the build starts from it: npm's `ruby+stdlib.wasm` is a reactor made for
//! a JavaScript host (`@ruby/wasm-wasi`). Once per toolchain, this pass makes it a module a
//! WASI-only host can run and a WAGI reactor ([`wasmless_runtime::abi`]):
//! - its JavaScript imports become local functions (`require "js"` traps; the handles of Ruby
//!   values it passes out are its own pointers, as a host's handle table would hand back);
//! - `wasmless_wagi_handle` calls `Wasmless.handle` (the glue, `glue.rb`) through the
//!   interpreter's own `rb-funcallv-protect`, with the receiver and method name in two globals
//!   the build sets before the snapshot;
//! - wasi-libc's environment reader is exported, to run again in each instance: the snapshot
//!   was taken with the build's (empty) environment, and a function reads its own.

use std::collections::HashSet;

use walrus::ir::{BinaryOp, Call, LoadKind, MemArg, Value, Visitor};
use walrus::{ConstExpr, FunctionBuilder, FunctionId, FunctionKind, Module, ValType};

/// The globals the build sets: `Wasmless`'s handle and the symbol `handle`.
pub const RECEIVER_GLOBAL: &str = "wasmless_ruby_receiver";
pub const METHOD_GLOBAL: &str = "wasmless_ruby_method";
/// wasi-libc's `__wasilibc_initialize_environ`, exported.
pub const ENVIRON_EXPORT: &str = "wasmless_ruby_environ";

const WASI: &str = "wasi_snapshot_preview1";

/// The patched interpreter, or why this one cannot be.
pub fn patch(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut module = Module::from_buffer(wasm)?;
    short_export_names(&mut module);
    let environ = environ_initializer(&module)?;
    stub_host_imports(&mut module)?;
    module.exports.add(ENVIRON_EXPORT, environ);
    add_handle(&mut module)?;
    Ok(module.emit_wasm())
}

/// wit-bindgen 0.x named each export by its signature (`rb-intern: func(name: string) -> u32`):
/// the name alone is enough (and what the build calls).
fn short_export_names(module: &mut Module) {
    for export in module.exports.iter_mut() {
        if let Some((name, _)) = export.name.split_once(": func(") {
            export.name = name.to_string();
        }
    }
}

/// The JavaScript host's imports, as local functions.
fn stub_host_imports(module: &mut Module) -> anyhow::Result<()> {
    let imports: Vec<(String, FunctionId)> = module
        .imports
        .iter()
        .filter(|i| i.module != WASI)
        .map(|i| match i.kind {
            walrus::ImportKind::Function(f) => Ok((i.name.clone(), f)),
            _ => Err(anyhow::anyhow!("unexpected non-function import {}", i.name)),
        })
        .collect::<anyhow::Result<_>>()?;
    for (name, id) in imports {
        module.replace_imported_func(id, |(body, args)| {
            match (name.as_str(), args.as_slice()) {
                // Handles are the guest's own pointers: new and get are the identity.
                ("resource_new_rb-abi-value" | "resource_get_rb-abi-value", [rep]) => {
                    body.local_get(*rep);
                }
                (n, _) if n.starts_with("resource_drop_") => {}
                _ => {
                    body.unreachable();
                }
            }
        })?;
    }
    Ok(())
}

/// `wasmless_wagi_handle`: `rb-funcallv-protect(receiver, method, [])`; traps when the call
/// raised (the glue rescues everything a handler raises), then drops the result's handle.
fn add_handle(module: &mut Module) -> anyhow::Result<()> {
    let export = |name: &str| -> anyhow::Result<FunctionId> {
        match module.exports.get_func(name) {
            Ok(f) => Ok(f),
            Err(_) => anyhow::bail!("the interpreter exports no {name}"),
        }
    };
    let funcall = export("rb-funcallv-protect")?;
    let drop_value = export("canonical_abi_drop_rb-abi-value")?;
    let memory = module
        .memories
        .iter()
        .next()
        .map(|m| m.id())
        .ok_or_else(|| anyhow::anyhow!("the interpreter has no memory"))?;
    let receiver =
        module
            .globals
            .add_local(ValType::I32, true, false, ConstExpr::Value(Value::I32(0)));
    let method =
        module
            .globals
            .add_local(ValType::I32, true, false, ConstExpr::Value(Value::I32(0)));
    module.exports.add(RECEIVER_GLOBAL, receiver);
    module.exports.add(METHOD_GLOBAL, method);

    let mut handle = FunctionBuilder::new(&mut module.types, &[], &[]);
    let result = module.locals.add(ValType::I32);
    let word = |offset| MemArg { align: 4, offset };
    let i32_load = LoadKind::I32 { atomic: false };
    handle
        .func_body()
        .global_get(receiver)
        .global_get(method)
        .i32_const(0)
        .i32_const(0)
        .call(funcall)
        .local_set(result)
        // The tuple's second field: the state rb_protect left (non-zero: it raised).
        .local_get(result)
        .load(memory, i32_load, word(4))
        .i32_const(0)
        .binop(BinaryOp::I32Ne)
        .if_else(
            None,
            |raised| {
                raised.unreachable();
            },
            |_| {},
        )
        .local_get(result)
        .load(memory, i32_load, word(0))
        .call(drop_value);
    let handle = handle.finish(vec![], &mut module.funcs);
    module
        .exports
        .add(wasmless_api::abi::REACTOR_EXPORT, handle);
    Ok(())
}

/// wasi-libc's `__wasilibc_initialize_environ` (the module has no names): the one function of
/// type `[] -> []` that calls both of the functions calling the imports `environ_sizes_get`
/// and `environ_get` (wasi-libc's `__wasi_*` wrappers).
fn environ_initializer(module: &Module) -> anyhow::Result<FunctionId> {
    let import = |name| {
        module
            .imports
            .get_func(WASI, name)
            .map_err(|_| anyhow::anyhow!("the interpreter does not import {name}"))
    };
    let (sizes, get) = (import("environ_sizes_get")?, import("environ_get")?);
    let calls = |id: FunctionId| -> HashSet<FunctionId> {
        match &module.funcs.get(id).kind {
            FunctionKind::Local(f) => {
                let mut calls = Calls::default();
                walrus::ir::dfs_in_order(&mut calls, f, f.entry_block());
                calls.0
            }
            _ => HashSet::new(),
        }
    };
    let callers_of = |target: &HashSet<FunctionId>| -> HashSet<FunctionId> {
        module
            .funcs
            .iter_local()
            .filter(|(id, _)| !calls(*id).is_disjoint(target))
            .map(|(id, _)| id)
            .collect()
    };
    let wrappers_of = |import: FunctionId| callers_of(&HashSet::from([import]));
    let (sizes, get) = (wrappers_of(sizes), wrappers_of(get));
    let nullary = |id: &FunctionId| {
        let ty = module.types.get(module.funcs.get(*id).ty());
        ty.params().is_empty() && ty.results().is_empty()
    };
    let found: Vec<FunctionId> = callers_of(&sizes)
        .intersection(&callers_of(&get))
        .copied()
        .filter(nullary)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        other => anyhow::bail!(
            "expected one environment initializer in the interpreter, found {}",
            other.len()
        ),
    }
}

#[derive(Default)]
struct Calls(HashSet<FunctionId>);

impl<'a> Visitor<'a> for Calls {
    fn visit_call(&mut self, call: &Call) {
        self.0.insert(call.func);
    }
}
