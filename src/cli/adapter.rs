//! The context adapter: `use`, `current`, `activate`, `deactivate`, `default`.

use super::args::Cli;
use super::contexts::print_receipt;
use super::output::{CliResult, Out};
use super::{close, open};
use ctxlog::create_adapter;
use ctxlog::model::check_context_name;
use serde_json::json;

pub async fn switch(cli: &Cli, out: Out, name: &str) -> CliResult {
    check_context_name(name)?;
    let m = open(cli, out, false).await?;
    let r = create_adapter(&m).await?.switch_to(name).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("now using {name}"));
    Ok(())
}

pub async fn current(cli: &Cli, out: Out) -> CliResult {
    let m = open(cli, out, false).await?;
    let adapter = create_adapter(&m).await?;
    let current = adapter.current();
    let active = adapter.active();
    let state = m.state();
    let default = state.default_context().map(str::to_string);
    let switched = state.current().map(str::to_string);
    close(m).await?;
    let json = json!({
        "current": current,
        "from_default": switched.is_none() && current.is_some(),
        "default": default,
        "active": active,
    });
    out.emit(&json, || {
        let mut s = match (&current, &switched) {
            (Some(c), Some(_)) => format!("{c}\n"),
            (Some(c), None) => format!("{c} (the default)\n"),
            (None, _) => "(no current context)\n".to_string(),
        };
        if !active.is_empty() {
            s += &format!("active: {}\n", active.join(", "));
        }
        s
    });
    Ok(())
}

pub async fn activate(cli: &Cli, out: Out, name: &str) -> CliResult {
    check_context_name(name)?;
    let m = open(cli, out, false).await?;
    let r = create_adapter(&m).await?.activate(name).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("activated {name}"));
    Ok(())
}

pub async fn deactivate(cli: &Cli, out: Out, name: &str) -> CliResult {
    check_context_name(name)?;
    let m = open(cli, out, false).await?;
    let r = create_adapter(&m).await?.deactivate(name).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("deactivated {name}"));
    Ok(())
}

pub async fn default(cli: &Cli, out: Out, name: Option<&str>, clear: bool) -> CliResult {
    if let Some(n) = name {
        check_context_name(n)?;
    }
    let m = open(cli, out, false).await?;
    if name.is_none() && !clear {
        let default = m.state().default_context().map(str::to_string);
        close(m).await?;
        out.emit(&json!({ "default": default }), || {
            default
                .clone()
                .unwrap_or_else(|| "(no default context)".into())
        });
        return Ok(());
    }
    let r = create_adapter(&m).await?.set_default(name).await?;
    close(m).await?;
    let what = match name {
        Some(n) => format!("default context is now {n}"),
        None => "default context cleared".into(),
    };
    print_receipt(out, &r, &what);
    Ok(())
}
