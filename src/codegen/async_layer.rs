//! baseplate's async layer for one IDL file: for each service, a handler
//! trait with one async method per IDL method (its own and every inherited
//! one), and a processor serving it as a tower service over
//! [`ThriftRequest`](crate::server::thrift::ThriftRequest).
//!
//! The layer builds on what `thrift --gen rs` writes for the same file
//! (its types and its argument and result structs) and goes in the same
//! module. A service that extends another hands the inherited methods to
//! the parent's processor, through a small adapter that makes the child's
//! handler the parent's: the parent's argument structs stay private to the
//! parent's module, as Apache makes them.

use std::fmt::Write as _;

use super::exceptions::{error_name, MethodError};
use super::idl::{Field, Function, Service, Type};
use super::names::{camel, field_name, safe, snake};
use super::tree::Tree;

/// Writes the async layer of file `file` of `tree`. `krate` is how the
/// generated code names baseplate (`::baseplate`).
pub(crate) fn emit(tree: &Tree, file: usize, krate: &str) -> String {
    let mut out = String::new();
    for service in &tree.files[file].document.services {
        Emitter {
            tree,
            file,
            krate,
            out: &mut out,
        }
        .service(service);
    }
    // The `thrift` crate through baseplate's re-export, so the generated
    // code and baseplate agree on its version.
    out.replace("__THRIFT__::", &format!("{krate}::thrift::"))
}

/// The path from the module of file `from` to the module of file `to`,
/// ending in `::` (empty for the same module). The root file's code is the
/// top of the generated file; each included file is a module inside it.
pub(crate) fn module_path(tree: &Tree, from: usize, to: usize) -> String {
    if from == to {
        String::new()
    } else if to == 0 {
        "super::".to_string()
    } else if from == 0 {
        format!("self::{}::", tree.files[to].module)
    } else {
        format!("super::{}::", tree.files[to].module)
    }
}

struct Emitter<'a> {
    tree: &'a Tree,
    /// The file whose module the code goes in.
    file: usize,
    krate: &'a str,
    out: &'a mut String,
}

/// The names one service's async layer uses.
struct ServiceNames<'s> {
    /// `KRATE::server::thrift`.
    thrift: String,
    /// `NameAsyncHandler`.
    handler: String,
    /// `NameAsyncProcessor`.
    processor: String,
    /// The service it extends, if any.
    parent: Option<Parent<'s>>,
}

/// The service a service extends, as the child's layer names it.
struct Parent<'s> {
    /// The module path to the parent's file, ending in `::` (or empty).
    path: String,
    service: &'s Service,
    /// `NameAsParentHandler`.
    adapter: String,
    /// The parent's processor over the adapter.
    processor: String,
}

/// A method with the file whose names its types use, and the service that
/// declares it.
struct Method<'a> {
    file: usize,
    service: &'a Service,
    function: &'a Function,
}

impl Emitter<'_> {
    /// The Rust type of `ty` as written in file `written_in`, named from
    /// this module.
    fn rust_type(&self, written_in: usize, ty: &Type) -> String {
        match ty {
            Type::Base(name) => match name.as_str() {
                "bool" => "bool".into(),
                "byte" | "i8" => "i8".into(),
                "i16" => "i16".into(),
                "i32" => "i32".into(),
                "i64" => "i64".into(),
                "double" => "__THRIFT__::OrderedFloat<f64>".into(),
                "binary" => "Vec<u8>".into(),
                _ => "String".into(),
            },
            Type::List(inner) => format!("Vec<{}>", self.rust_type(written_in, inner)),
            Type::Set(inner) => format!(
                "::std::collections::BTreeSet<{}>",
                self.rust_type(written_in, inner)
            ),
            Type::Map(k, v) => format!(
                "::std::collections::BTreeMap<{}, {}>",
                self.rust_type(written_in, k),
                self.rust_type(written_in, v)
            ),
            Type::Named(name) => {
                // Checked when the tree was loaded.
                let (file, local) = match self.tree.resolve(written_in, name) {
                    Some((resolved, _)) => (resolved.file, resolved.name),
                    None => (written_in, name.as_str()),
                };
                format!(
                    "{}{}",
                    module_path(self.tree, self.file, file),
                    safe(camel(local))
                )
            }
        }
    }

    /// An argument's type. Never an `Option`, even for an argument
    /// declared `optional`: the Apache generator's argument structs (which
    /// the dispatch reads) require every argument, and so do its sync
    /// handlers.
    fn arg_type(&self, written_in: usize, field: &Field) -> String {
        self.rust_type(written_in, &field.ty)
    }

    /// A handler method's signature, without `;` or body.
    fn signature(&self, method: &Method<'_>) -> String {
        let function = method.function;
        let args: String = function
            .args
            .iter()
            .map(|a| {
                format!(
                    ", {}: {}",
                    field_name(&a.name),
                    self.arg_type(method.file, a)
                )
            })
            .collect();
        let returns = function
            .returns
            .as_ref()
            .map_or("()".to_string(), |ty| self.rust_type(method.file, ty));
        let error = if function.throws.is_empty() {
            "__THRIFT__::Error".to_string()
        } else {
            format!(
                "{}{}",
                module_path(self.tree, self.file, method.file),
                error_name(&method.service.name, &function.name)
            )
        };
        format!(
            "fn handle_{}(&self{args}) -> impl ::std::future::Future<Output = ::std::result::Result<{returns}, {error}>> + Send",
            snake(&function.name)
        )
    }

    /// Every method of a chain, the most distant ancestor's first.
    fn methods<'t>(chain: &[(usize, &'t Service)]) -> Vec<Method<'t>> {
        chain
            .iter()
            .rev()
            .flat_map(|(file, s)| {
                s.functions.iter().map(move |function| Method {
                    file: *file,
                    service: s,
                    function,
                })
            })
            .collect()
    }

    fn service(&mut self, service: &Service) {
        let chain = self.tree.chain(self.file, service);
        let name = camel(&service.name);
        let names = ServiceNames {
            thrift: format!("{}::server::thrift", self.krate),
            handler: format!("{name}AsyncHandler"),
            processor: format!("{name}AsyncProcessor"),
            // The parent's processor, serving the inherited methods through
            // an adapter.
            parent: chain.get(1).map(|&(parent_file, parent)| {
                let path = module_path(self.tree, self.file, parent_file);
                let adapter = format!("{name}AsParentHandler");
                let processor =
                    format!("{path}{}AsyncProcessor<{adapter}<H>>", camel(&parent.name));
                Parent {
                    path,
                    service: parent,
                    adapter,
                    processor,
                }
            }),
        };
        for function in service.functions.iter().filter(|f| !f.throws.is_empty()) {
            self.method_error(service, function)
                .emit(&function.name, self.out);
        }
        self.handler_trait(service, &names, &Self::methods(&chain));
        self.processor_struct(&names);
        if let Some(parent) = &names.parent {
            self.parent_adapter(&names.handler, parent, &chain[1..]);
        }
        self.service_impl(service, &names);
    }

    /// `trait NameAsyncHandler`: one async method per method of the chain.
    fn handler_trait(
        &mut self,
        service: &Service,
        names: &ServiceNames<'_>,
        methods: &[Method<'_>],
    ) {
        let mut trait_methods = String::new();
        for method in methods {
            let _ = writeln!(
                trait_methods,
                "  /// `{}`.\n  {};",
                method.function.name,
                self.signature(method)
            );
        }
        let (handler, processor) = (&names.handler, &names.processor);
        let _ = writeln!(
            self.out,
            "\n/// The handlers of the `{}` service, as async functions: implement them\n\
             /// with `async fn`, and serve them with [`{processor}`].\n\
             pub trait {handler}: Send + Sync + 'static {{\n{trait_methods}}}",
            service.name
        );
    }

    /// `struct NameAsyncProcessor<H>` with `Clone`, `Debug` and `new`.
    fn processor_struct(&mut self, names: &ServiceNames<'_>) {
        let (handler, processor) = (&names.handler, &names.processor);
        let parent = names.parent.as_ref();
        let parent_field = parent
            .map(|p| format!("  parent: {},\n", p.processor))
            .unwrap_or_default();
        let parent_clone = if parent.is_some() {
            ", parent: self.parent.clone()"
        } else {
            ""
        };
        let parent_new = match parent {
            // Before `handler` moves into the struct: fields are evaluated in order.
            Some(p) => format!(
                "parent: {}{}AsyncProcessor::new({}(::std::sync::Arc::clone(&handler))), ",
                p.path,
                camel(&p.service.name),
                p.adapter
            ),
            None => String::new(),
        };
        let _ = writeln!(
            self.out,
            "\n/// Serves a [`{handler}`]: a tower service over Thrift calls, for\n\
             /// `baseplate::Serve::thrift_service`.\n\
             pub struct {processor}<H> {{\n  handler: ::std::sync::Arc<H>,\n{parent_field}}}\n\n\
             impl<H: {handler}> Clone for {processor}<H> {{\n  fn clone(&self) -> Self {{\n    {processor} {{ handler: ::std::sync::Arc::clone(&self.handler){parent_clone} }}\n  }}\n}}\n\n\
             impl<H> ::std::fmt::Debug for {processor}<H> {{\n  fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{\n    f.write_str(\"{processor}\")\n  }}\n}}\n\n\
             impl<H: {handler}> {processor}<H> {{\n  /// A processor calling `handler`.\n  pub fn new(handler: H) -> {processor}<H> {{\n    let handler = ::std::sync::Arc::new(handler);\n    {processor} {{ {parent_new}handler }}\n  }}\n}}"
        );
    }

    /// The adapter that makes `handler` the parent's handler, forwarding
    /// each inherited method.
    fn parent_adapter(
        &mut self,
        handler: &str,
        parent: &Parent<'_>,
        parent_chain: &[(usize, &Service)],
    ) {
        let mut forwards = String::new();
        for method in Self::methods(parent_chain) {
            let args: Vec<String> = method
                .function
                .args
                .iter()
                .map(|a| field_name(&a.name))
                .collect();
            let _ = writeln!(
                forwards,
                "  {} {{\n    self.0.handle_{}({})\n  }}",
                self.signature(&method),
                snake(&method.function.name),
                args.join(", ")
            );
        }
        let (path, adapter) = (&parent.path, &parent.adapter);
        let _ = writeln!(
            self.out,
            "\n/// `{handler}` as the `{}` handler, serving the inherited methods.\n\
             #[doc(hidden)]\n\
             pub struct {adapter}<H>(::std::sync::Arc<H>);\n\n\
             impl<H: {handler}> {path}{}AsyncHandler for {adapter}<H> {{\n{forwards}}}",
            parent.service.name,
            camel(&parent.service.name)
        );
    }

    /// The processor's `tower::Service` impl: the service's own methods by
    /// index, anything else to the parent (or `UnknownMethod`).
    fn service_impl(&mut self, service: &Service, names: &ServiceNames<'_>) {
        let krate = self.krate;
        let (thrift, handler, processor) = (&names.thrift, &names.handler, &names.processor);
        let _ = writeln!(
            self.out,
            "\nimpl<H: {handler}> {krate}::tower::Service<{thrift}::ThriftRequest> for {processor}<H> {{\n\
             \x20 type Response = {thrift}::ThriftResponse;\n\
             \x20 type Error = {krate}::BoxError;\n\
             \x20 type Future = ::std::pin::Pin<Box<dyn ::std::future::Future<Output = Result<{thrift}::ThriftResponse, {krate}::BoxError>> + Send>>;\n\n\
             \x20 fn poll_ready(&mut self, _cx: &mut ::std::task::Context<'_>) -> ::std::task::Poll<Result<(), {krate}::BoxError>> {{\n\
             \x20   ::std::task::Poll::Ready(Ok(()))\n\
             \x20 }}\n\n\
             \x20 fn call(&mut self, request: {thrift}::ThriftRequest) -> Self::Future {{\n\
             \x20   let own = match &*request.method {{"
        );
        for (index, function) in service.functions.iter().enumerate() {
            let _ = writeln!(self.out, "      {:?} => {index},", function.name);
        }
        let fallback = match &names.parent {
            Some(parent) => format!(
                "<{} as {krate}::tower::Service<{thrift}::ThriftRequest>>::call(&mut self.parent, request)",
                parent.processor
            ),
            None => "Box::pin(async move {\n\
                     \x20       let method = ::std::sync::Arc::clone(&request.method);\n\
                     \x20       Ok(request.exception(__THRIFT__::ApplicationError::new(\n\
                     \x20         __THRIFT__::ApplicationErrorKind::UnknownMethod,\n\
                     \x20         format!(\"unknown method {}\", method),\n\
                     \x20       )))\n\
                     \x20     })"
                .to_string(),
        };
        let _ = writeln!(
            self.out,
            "      _ => return {fallback},\n\
             \x20   }};\n\
             \x20   request.record_service_name({:?});\n\
             \x20   let handler = ::std::sync::Arc::clone(&self.handler);\n\
             \x20   Box::pin(async move {{\n\
             \x20     match own {{",
            service.name
        );
        for (index, function) in service.functions.iter().enumerate() {
            self.dispatch(index, service, function, thrift);
        }
        let _ = writeln!(
            self.out,
            "        _ => unreachable!(),\n\
             \x20     }}\n\
             \x20   }})\n\
             \x20 }}\n\
             }}"
        );
    }

    /// One own method's arm: read the arguments, await the handler, write
    /// the result (or a declared exception).
    fn dispatch(&mut self, index: usize, service: &Service, function: &Function, thrift: &str) {
        let (service_name, method) = (camel(&service.name), camel(&function.name));
        let args_struct = format!("{service_name}{method}Args");
        let result_struct = format!("{service_name}{method}Result");
        let call_args: Vec<String> = function
            .args
            .iter()
            .map(|a| format!("args.{}", field_name(&a.name)))
            .collect();
        let binding = if function.args.is_empty() {
            "_args"
        } else {
            "args"
        };
        let _ = writeln!(
            self.out,
            "        {index} => {{\n\
             \x20         let {binding} = match request.read_args(|i| {args_struct}::read_from_in_protocol(i)) {{\n\
             \x20           Ok(args) => args,\n\
             \x20           Err(e) => return Ok(request.error_reply(e)),\n\
             \x20         }};\n\
             \x20         let outcome = handler.handle_{}({}).await;",
            snake(&function.name),
            call_args.join(", ")
        );
        if function.oneway {
            let _ = writeln!(
                self.out,
                "          match outcome {{\n\
                 \x20           Ok(()) => Ok({thrift}::ThriftResponse::none()),\n\
                 \x20           Err(e) => Ok(request.oneway_failed(&e)),\n\
                 \x20         }}\n\
                 \x20       }}"
            );
            return;
        }
        let result = |set| result_literal(function, &result_struct, set);
        let ok = if function.returns.is_some() {
            result(Some(("result_value", "value")))
        } else {
            result(None)
        };
        let _ = writeln!(
            self.out,
            "          match outcome {{\n\
             \x20           Ok(value) => {{\n\
             \x20             let _ = &value;\n\
             \x20             request.reply(|o| {ok}.write_to_out_protocol(o)).map_err(Into::into)\n\
             \x20           }}"
        );
        let other = if function.throws.is_empty() {
            "e".to_string()
        } else {
            self.declared_exceptions(service, function, &result_struct)
        };
        let _ = writeln!(
            self.out,
            "            Err({other}) => Ok(request.error_reply(e)),\n          }}\n        }}"
        );
    }

    /// The error enum of `function`, one of this service's own.
    fn method_error(&self, service: &Service, function: &Function) -> MethodError {
        MethodError::new(&service.name, function, |ty| self.rust_type(self.file, ty))
    }

    /// An arm per declared exception, each written as its field of the
    /// result struct; returns the pattern of the enum's catch-all variant.
    fn declared_exceptions(
        &mut self,
        service: &Service,
        function: &Function,
        result_struct: &str,
    ) -> String {
        let error = self.method_error(service, function);
        for declared in &error.declared {
            let set = result_literal(
                function,
                result_struct,
                Some((&field_name(&declared.field), "declared")),
            );
            let _ = writeln!(
                self.out,
                "            Err({}::{}(declared)) => request.reply(|o| {set}.write_to_out_protocol(o)).map_err(Into::into),",
                error.name, declared.variant
            );
        }
        format!("{}::{}(e)", error.name, error.other)
    }
}

/// A result struct literal with at most one field set: `set` is the field's
/// name and the value's expression.
fn result_literal(function: &Function, result_struct: &str, set: Option<(&str, &str)>) -> String {
    let mut fields = Vec::new();
    if function.returns.is_some() {
        fields.push(match set {
            Some(("result_value", value)) => format!("result_value: Some({value})"),
            _ => "result_value: None".to_string(),
        });
    }
    for throw in &function.throws {
        let name = field_name(&throw.name);
        fields.push(match set {
            Some((field, value)) if field == name => format!("{name}: Some({value})"),
            _ => format!("{name}: None"),
        });
    }
    format!("{result_struct} {{ {} }}", fields.join(", "))
}
