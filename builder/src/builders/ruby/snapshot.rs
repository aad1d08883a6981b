//! One function's module: the patched interpreter ([`super::interpreter`]) started, the glue
//! and the function's source loaded, and the whole state snapshotted by wizer. An instance of
//! the result starts where the build left off: no interpreter start, no parsing per request.

use wasmtime::{Engine, Instance, Linker, Module, Store, Val};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use super::interpreter::{ENVIRON_EXPORT, METHOD_GLOBAL, RECEIVER_GLOBAL};

/// The glue: Kubeless's contract in Ruby, over the reactor's stdin and stdout.
const GLUE: &str = include_str!("glue.rb");
/// The arguments the interpreter starts with (those of `@ruby/wasm-wasi`'s default VM).
const ARGS: [&str; 3] = ["ruby", "-EUTF-8", "-e_=0"];

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The function's source failed to load (its message, as Ruby printed it).
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A wizer instance set to run the snapshot's environment reader as `_initialize`, in each
/// instance (the interpreter's own `_initialize` ran before the snapshot).
fn wizer() -> Wizer {
    let mut wizer = Wizer::new();
    wizer.func_rename("_initialize", ENVIRON_EXPORT);
    wizer
}

/// The interpreter as wizer runs it (instrumented: every global and memory exported).
pub fn instrumented(interpreter: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (_, wasm) = wizer()
        .instrument(interpreter)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(wasm)
}

/// The module of `function` defined by `source`. `compiled` is [`instrumented`]`(interpreter)`
/// compiled by `engine`.
pub fn function(
    engine: &Engine,
    interpreter: &[u8],
    compiled: &Module,
    source: &[u8],
    (file, function): (&str, &str),
) -> Result<Vec<u8>, SnapshotError> {
    let wizer = wizer();
    let (cx, _) = wizer.instrument(interpreter).map_err(internal)?;
    // What the source prints while it loads goes nowhere: WASI's default stdout and stderr.
    let wasi = WasiCtxBuilder::new()
        .args(&ARGS)
        .stdin(MemoryInputPipe::new(source.to_vec()))
        .build_p1();
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s).map_err(internal)?;
    let mut store = Store::new(engine, wasi);
    let instance = linker.instantiate(&mut store, compiled).map_err(internal)?;
    let mut vm = Vm {
        store: &mut store,
        instance,
    };
    vm.call::<(), ()>("_initialize", ())?;
    let args = vm.strings(&ARGS)?;
    vm.call::<(u32, u32), ()>("ruby-init", (args, ARGS.len() as u32))?;
    vm.call::<(), ()>("ruby-init-loadpath", ())?;
    let glue = vm.eval(GLUE)?;
    vm.drop_value(glue)?;
    // The file and method are identifiers (checked by the builder): they are safe to paste.
    // The source runs here: whatever stops the interpreter (exit!, a trap) is the source's.
    let failed = vm
        .eval(&format!("Wasmless.setup('{file}', :{function})"))
        .map_err(|e| {
            SnapshotError::Source(format!(
                "the function's source stopped the interpreter while loading: {}",
                reason(&e)
            ))
        })?;
    let message = vm.text(failed)?;
    if !message.is_empty() {
        return Err(SnapshotError::Source(message));
    }
    let receiver = vm.eval("Wasmless")?;
    let method = vm.intern("handle")?;
    vm.set_global(RECEIVER_GLOBAL, receiver)?;
    vm.set_global(METHOD_GLOBAL, method)?;
    let snapshot = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(anyhow::Error::from)?
        .block_on(wizer.snapshot(&cx, &mut vm))
        .map_err(internal)?;
    Ok(snapshot)
}

/// The last line of an error from wasmtime: the trap or exit itself, after its backtrace.
fn reason(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let last = text.lines().rev().map(str::trim).find(|l| !l.is_empty());
    last.unwrap_or_default().to_string()
}

fn internal(e: wasmtime::Error) -> SnapshotError {
    SnapshotError::Internal(anyhow::anyhow!("{e:?}"))
}

/// The interpreter's exports, called as `@ruby/wasm-wasi` calls them (the component model's
/// canonical ABI of wit-bindgen 0.x: strings and lists in memory from `cabi_realloc`).
struct Vm<'a> {
    store: &'a mut Store<WasiP1Ctx>,
    instance: Instance,
}

impl Vm<'_> {
    fn call<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
        params: P,
    ) -> anyhow::Result<R> {
        let f = self
            .instance
            .get_typed_func::<P, R>(&mut *self.store, name)
            .map_err(|e| anyhow::anyhow!("the interpreter's {name}: {e}"))?;
        f.call(&mut *self.store, params)
            .map_err(|e| anyhow::anyhow!("the interpreter's {name} failed: {e:?}"))
    }

    fn memory(&mut self) -> anyhow::Result<wasmtime::Memory> {
        self.instance
            .get_memory(&mut *self.store, "memory")
            .ok_or_else(|| anyhow::anyhow!("the interpreter exports no memory"))
    }

    /// Copies `bytes` into the guest's memory.
    fn bytes(&mut self, bytes: &[u8], align: u32) -> anyhow::Result<u32> {
        let len = u32::try_from(bytes.len())?;
        let ptr: u32 = self.call("cabi_realloc", (0u32, 0u32, align, len.max(1)))?;
        let memory = self.memory()?;
        memory.write(&mut *self.store, ptr as usize, bytes)?;
        Ok(ptr)
    }

    /// A string as the interpreter takes it: its C code reads to a NUL, so one ends it (and is
    /// counted, as `@ruby/wasm-wasi` does). Its address and length.
    fn string(&mut self, s: &str) -> anyhow::Result<(u32, u32)> {
        let mut bytes = Vec::with_capacity(s.len() + 1);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        Ok((self.bytes(&bytes, 1)?, u32::try_from(bytes.len())?))
    }

    /// A `list<string>` in the guest's memory.
    fn strings(&mut self, strings: &[&str]) -> anyhow::Result<u32> {
        let mut pairs = Vec::new();
        for s in strings {
            let (ptr, len) = self.string(s)?;
            pairs.extend(ptr.to_le_bytes());
            pairs.extend(len.to_le_bytes());
        }
        self.bytes(&pairs, 4)
    }

    fn read_u32(&mut self, at: u32) -> anyhow::Result<u32> {
        let memory = self.memory()?;
        let mut word = [0; 4];
        memory.read(&*self.store, at as usize, &mut word)?;
        Ok(u32::from_le_bytes(word))
    }

    /// Evaluates `code`; the handle of its value. Only the build's own code: it must not raise.
    fn eval(&mut self, code: &str) -> anyhow::Result<u32> {
        let (ptr, len) = self.string(code)?;
        let ret: u32 = self.call("rb-eval-string-protect", (ptr, len))?;
        let (value, state) = (self.read_u32(ret)?, self.read_u32(ret + 4)?);
        if state != 0 {
            let error: u32 = self.call("rb-errinfo", ())?;
            self.call::<(), ()>("rb-clear-errinfo", ())?;
            let method = self.intern("full_message")?;
            let ret: u32 = self.call("rb-funcallv-protect", (error, method, 0u32, 0u32))?;
            let message = match self.read_u32(ret + 4)? {
                0 => {
                    let message = self.read_u32(ret)?;
                    self.text(message)?
                }
                _ => String::new(),
            };
            anyhow::bail!("the build's Ruby code raised (state {state}): {message}");
        }
        Ok(value)
    }

    /// The text of a String value (then dropped).
    fn text(&mut self, value: u32) -> anyhow::Result<String> {
        let ret: u32 = self.call("rstring-ptr", value)?;
        let (ptr, len) = (self.read_u32(ret)?, self.read_u32(ret + 4)?);
        let memory = self.memory()?;
        let mut bytes = vec![0; len as usize];
        memory.read(&*self.store, ptr as usize, &mut bytes)?;
        self.call::<u32, ()>("cabi_post_rstring-ptr", ret)?;
        self.drop_value(value)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn drop_value(&mut self, value: u32) -> anyhow::Result<()> {
        self.call("canonical_abi_drop_rb-abi-value", value)
    }

    fn intern(&mut self, name: &str) -> anyhow::Result<u32> {
        let (ptr, len) = self.string(name)?;
        self.call("rb-intern", (ptr, len))
    }

    fn set_global(&mut self, name: &str, value: u32) -> anyhow::Result<()> {
        let global = self
            .instance
            .get_global(&mut *self.store, name)
            .ok_or_else(|| anyhow::anyhow!("the interpreter exports no global {name}"))?;
        global.set(&mut *self.store, Val::I32(value as i32))?;
        Ok(())
    }
}

/// What wizer reads of the instance (every global and memory, exported by its instrumentation).
impl InstanceState for Vm<'_> {
    fn global_get(&mut self, name: &str, _: ValType) -> impl Future<Output = SnapshotVal> + Send {
        let value = match self.instance.get_global(&mut *self.store, name) {
            Some(g) => match g.get(&mut *self.store) {
                Val::I32(x) => SnapshotVal::I32(x),
                Val::I64(x) => SnapshotVal::I64(x),
                Val::F32(x) => SnapshotVal::F32(x),
                Val::F64(x) => SnapshotVal::F64(x),
                Val::V128(x) => SnapshotVal::V128(x.as_u128()),
                // wizer refuses reference types when it instruments the module.
                other => unreachable!("global {name} holds {other:?}"),
            },
            None => unreachable!("wizer exported the global {name}"),
        };
        std::future::ready(value)
    }

    fn memory_contents(
        &mut self,
        name: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => unreachable!("wizer exported the memory {name}"),
        }
        std::future::ready(())
    }
}
