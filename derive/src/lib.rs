//! `#[derive(Module)]` for wgnn: writes `wgnn::Module` for a struct whose fields are named as
//! PyTorch names its attributes. Use it as `wgnn::Module` (re-exported there), where its
//! attributes are documented with examples.
//!
//! Every field is one of:
//! - a parameter (`Parameter`, `Option<Parameter>`) or a buffer (`Buffer`, `Option<Buffer>`),
//!   recognised by type (or forced with `#[module(parameter)]` / `#[module(buffer)]`);
//! - a child: any type implementing `wgnn::module::Child` (every `Module`, `Option<M>`,
//!   `Vec<M>`, `Box<dyn Layer>`);
//! - `#[module(skip)]`: plain data (sizes, `eps`, flags), not visited;
//! - `#[module(training)]`: the `bool` training flag (`train()` / `eval()` set it).
//!
//! `#[module(name = "0")]` gives a field a key that is not a Rust identifier. On the struct,
//! `#[module(type_name = "Name")]` overrides the printed class name and
//! `#[module(extra_repr = method)]` names a `fn(&self) -> String` for the repr's arguments.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::{
    parse_macro_input, spanned::Spanned, Data, DeriveInput, Fields, GenericArgument, LitStr,
    PathArguments, Type,
};

/// Derives `wgnn::Module`. See `wgnn::Module` for the attributes.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Parameter,
    Buffer,
    Child,
    Skip,
    Training,
}

struct FieldSpec {
    ident: syn::Ident,
    key: String,
    kind: Kind,
    ty: Type,
}

/// The last path segment's name of a type, and its first generic argument when it has one.
fn last_segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let arg = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((seg.ident.to_string(), arg))
}

/// Parameter or buffer, from the type as written (`Parameter`, `Option<wgnn::Buffer>`, …).
fn tensor_kind(ty: &Type) -> Option<Kind> {
    let (name, arg) = last_segment(ty)?;
    let of = |n: &str| match n {
        "Parameter" => Some(Kind::Parameter),
        "Buffer" => Some(Kind::Buffer),
        _ => None,
    };
    match (name.as_str(), arg) {
        ("Option", Some(inner)) => last_segment(inner).and_then(|(n, _)| of(&n)),
        (n, _) => of(n),
    }
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Module)] takes a struct with named fields (a module's attributes)",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(
            data.fields.span(),
            "#[derive(Module)] takes a struct with named fields: PyTorch names every attribute",
        ));
    };

    let mut type_name = input.ident.to_string();
    let mut extra_repr: Option<syn::Path> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("type_name") {
                type_name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else if meta.path.is_ident("extra_repr") {
                extra_repr = Some(meta.value()?.parse::<syn::Path>()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[module(..)] attribute on a struct: expected `type_name = \"Name\"` \
                     or `extra_repr = method`",
                ))
            }
        })?;
    }

    let mut fields = Vec::new();
    for f in &named.named {
        let Some(ident) = f.ident.clone() else {
            continue;
        };
        let mut key = ident.to_string();
        if let Some(stripped) = key.strip_prefix("r#") {
            key = stripped.to_string();
        }
        let mut kind = None;
        for attr in f.attrs.iter().filter(|a| a.path().is_ident("module")) {
            attr.parse_nested_meta(|meta| {
                let set = |k: Kind, kind: &mut Option<Kind>| {
                    if kind.is_some() {
                        return Err(
                            meta.error("a field takes one of skip, training, parameter, buffer")
                        );
                    }
                    *kind = Some(k);
                    Ok(())
                };
                if meta.path.is_ident("skip") {
                    set(Kind::Skip, &mut kind)
                } else if meta.path.is_ident("training") {
                    set(Kind::Training, &mut kind)
                } else if meta.path.is_ident("parameter") {
                    set(Kind::Parameter, &mut kind)
                } else if meta.path.is_ident("buffer") {
                    set(Kind::Buffer, &mut kind)
                } else if meta.path.is_ident("child") {
                    set(Kind::Child, &mut kind)
                } else if meta.path.is_ident("name") {
                    key = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown #[module(..)] attribute on a field: expected skip, training, \
                         name = \"key\", parameter, buffer or child",
                    ))
                }
            })?;
        }
        let kind = kind.unwrap_or_else(|| tensor_kind(&f.ty).unwrap_or(Kind::Child));
        fields.push(FieldSpec {
            ident,
            key,
            kind,
            ty: f.ty.clone(),
        });
    }

    let training: Vec<_> = fields.iter().filter(|f| f.kind == Kind::Training).collect();
    if training.len() > 1 {
        return Err(syn::Error::new(
            training[1].ident.span(),
            "only one field can be #[module(training)]",
        ));
    }

    let name = &input.ident;
    let mut generics = input.generics.clone();
    for p in generics.type_params_mut() {
        p.bounds.push(syn::parse_quote!('static));
    }
    {
        let wc = generics.make_where_clause();
        for f in fields.iter().filter(|f| f.kind == Kind::Child) {
            let ty = &f.ty;
            // Spanned at the field's type, so the error points at the field to mark.
            wc.predicates
                .push(syn::parse_quote_spanned!(ty.span()=> #ty: ::wgnn::module::Child));
        }
        wc.predicates
            .push(syn::parse_quote!(Self: ::core::marker::Send + ::core::marker::Sync));
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();

    let idents: Vec<_> = fields.iter().map(|f| &f.ident).collect();
    let visit = |mutable: bool| -> Vec<TokenStream2> {
        fields
            .iter()
            .filter_map(|f| {
                let id = &f.ident;
                let key = LitStr::new(&f.key, Span::call_site());
                Some(match (f.kind, mutable) {
                    (Kind::Parameter, false) => {
                        quote!(::wgnn::module::ParamField::visit_field(#id, #key, __wgnn_v);)
                    }
                    (Kind::Parameter, true) => {
                        quote!(::wgnn::module::ParamField::visit_field_mut(#id, #key, __wgnn_v);)
                    }
                    (Kind::Buffer, false) => {
                        quote!(::wgnn::module::BufferField::visit_field(#id, #key, __wgnn_v);)
                    }
                    (Kind::Buffer, true) => {
                        quote!(::wgnn::module::BufferField::visit_field_mut(#id, #key, __wgnn_v);)
                    }
                    (Kind::Child, false) => {
                        quote!(::wgnn::module::Child::visit_child(#id, #key, __wgnn_v);)
                    }
                    (Kind::Child, true) => {
                        quote!(::wgnn::module::Child::visit_child_mut(#id, #key, __wgnn_v);)
                    }
                    (Kind::Skip | Kind::Training, _) => {
                        let _ = id;
                        return None;
                    }
                })
            })
            .collect()
    };
    let (visit_ref, visit_mut) = (visit(false), visit(true));

    let training_fns = training.first().map(|f| {
        let id = &f.ident;
        quote! {
            fn training(&self) -> ::core::option::Option<bool> {
                ::core::option::Option::Some(self.#id)
            }
            fn set_training(&mut self, on: bool) {
                self.#id = on;
            }
        }
    });
    let extra = extra_repr.map(|p| {
        quote! {
            fn extra_repr(&self) -> ::std::string::String {
                #p(self)
            }
        }
    });
    let type_name = LitStr::new(&type_name, Span::call_site());

    Ok(quote! {
        impl #impl_g ::wgnn::Module for #name #ty_g #where_c {
            fn type_name(&self) -> ::std::string::String {
                ::std::string::String::from(#type_name)
            }
            #extra
            #training_fns
            #[allow(unused_variables)]
            fn visit<'__a>(&'__a self, __wgnn_v: &mut dyn ::wgnn::Visitor<'__a>) {
                let #name { #(#idents,)* } = self;
                #(#visit_ref)*
            }
            #[allow(unused_variables)]
            fn visit_mut<'__a>(&'__a mut self, __wgnn_v: &mut dyn ::wgnn::VisitorMut<'__a>) {
                let #name { #(#idents,)* } = self;
                #(#visit_mut)*
            }
            fn as_any_mut(&mut self) -> ::core::option::Option<&mut dyn ::core::any::Any> {
                ::core::option::Option::Some(self)
            }
        }
    })
}
