//! A typed error for each method that declares exceptions, as pilota-build
//! (volo) writes one: `enum ServiceMethodError { Declared(Type), ...,
//! Other(thrift::Error) }`.
//!
//! An async handler returns it, so a declared exception is a value of its
//! own type, never a `Box<dyn Error>` to downcast; and a client converts
//! what the Apache client returns into it (`From<thrift::Error>`, which
//! finds the declared exception in `Error::User`). The wire is Apache's:
//! a declared exception is its field of the method's result struct, any
//! other error an application exception.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::idl::Function;
use super::names::{camel, snake};

/// One declared exception as the enum names it.
pub(crate) struct Declared {
    /// The enum variant: the field's name in CamelCase.
    pub(crate) variant: String,
    /// The IDL field's name, for docs.
    pub(crate) field: String,
    /// Its Rust type, named from the enum's module.
    pub(crate) ty: String,
}

/// The names of one method's error enum.
pub(crate) struct MethodError {
    /// `ServiceMethodError`.
    pub(crate) name: String,
    /// Each declared exception, in IDL order.
    pub(crate) declared: Vec<Declared>,
    /// The variant for every other error: `Other`, unless a declared one
    /// is named so.
    pub(crate) other: String,
}

impl MethodError {
    /// The error enum of `function` of `service`; `rust_type` names each
    /// exception's type from the enum's module.
    pub(crate) fn new(
        service: &str,
        function: &Function,
        rust_type: impl Fn(&super::idl::Type) -> String,
    ) -> MethodError {
        let mut taken = HashSet::new();
        let declared = function
            .throws
            .iter()
            .map(|throw| {
                let base = camel(&snake(&throw.name));
                let mut variant = base.clone();
                let mut n = 2;
                while !taken.insert(variant.clone()) {
                    variant = format!("{base}{n}");
                    n += 1;
                }
                Declared {
                    variant,
                    field: throw.name.clone(),
                    ty: rust_type(&throw.ty),
                }
            })
            .collect();
        let mut other = "Other".to_string();
        while taken.contains(&other) {
            other.push('_');
        }
        MethodError {
            name: error_name(service, &function.name),
            declared,
            other,
        }
    }

    /// The enum and its conversions, in the service's module.
    pub(crate) fn emit(&self, method: &str, out: &mut String) {
        let (name, other) = (&self.name, &self.other);
        let mut variants = String::new();
        let mut display = String::new();
        let mut into_thrift = String::new();
        let mut downcasts = String::new();
        for d in &self.declared {
            let (variant, ty) = (&d.variant, &d.ty);
            let _ = writeln!(
                variants,
                "  /// The declared exception `{}`, sent to the caller as itself.\n  {variant}({ty}),",
                d.field
            );
            let _ = writeln!(
                display,
                "      {name}::{variant}(e) => ::std::fmt::Display::fmt(e, f),"
            );
            let _ = writeln!(
                into_thrift,
                "      {name}::{variant}(e) => __THRIFT__::Error::User(Box::new(e)),"
            );
            let _ = writeln!(
                downcasts,
                "    let e = match e.downcast::<{ty}>() {{\n      Ok(declared) => return {name}::{variant}(*declared),\n      Err(e) => e,\n    }};"
            );
        }
        let _ = writeln!(
            out,
            "\n/// What `{method}` fails with: one of its declared exceptions, or any\n\
             /// other error (the caller gets an application exception).\n\
             #[derive(Debug)]\n\
             pub enum {name} {{\n{variants}\
             \x20 /// Any other error: the caller gets an application exception.\n\
             \x20 {other}(__THRIFT__::Error),\n}}\n\n\
             impl ::std::fmt::Display for {name} {{\n\
             \x20 fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{\n\
             \x20   match self {{\n{display}\
             \x20     {name}::{other}(e) => ::std::fmt::Display::fmt(e, f),\n\
             \x20   }}\n  }}\n}}\n\n\
             impl ::std::error::Error for {name} {{}}\n\n\
             /// What a client's call returned, with a declared exception as its variant.\n\
             impl From<__THRIFT__::Error> for {name} {{\n\
             \x20 fn from(e: __THRIFT__::Error) -> {name} {{\n\
             \x20   let e = match e {{\n\
             \x20     __THRIFT__::Error::User(e) => e,\n\
             \x20     e => return {name}::{other}(e),\n\
             \x20   }};\n{downcasts}\
             \x20   {name}::{other}(__THRIFT__::Error::User(e))\n  }}\n}}\n\n\
             impl From<{name}> for __THRIFT__::Error {{\n\
             \x20 fn from(e: {name}) -> __THRIFT__::Error {{\n\
             \x20   match e {{\n{into_thrift}\
             \x20     {name}::{other}(e) => e,\n\
             \x20   }}\n  }}\n}}"
        );
        for d in self.unambiguous() {
            let (variant, ty) = (&d.variant, &d.ty);
            let _ = writeln!(
                out,
                "\nimpl From<{ty}> for {name} {{\n  fn from(e: {ty}) -> {name} {{\n    {name}::{variant}(e)\n  }}\n}}"
            );
        }
    }

    /// The declared exceptions whose type no other one of the method
    /// shares: each gets `From` (`?` and `.into()` in a handler).
    fn unambiguous(&self) -> impl Iterator<Item = &Declared> {
        self.declared
            .iter()
            .filter(|d| self.declared.iter().filter(|o| o.ty == d.ty).count() == 1)
    }
}

/// `ServiceMethodError`, beside Apache's `ServiceMethodArgs` and
/// `ServiceMethodResult`.
pub(crate) fn error_name(service: &str, method: &str) -> String {
    format!("{}{}Error", camel(service), camel(method))
}
