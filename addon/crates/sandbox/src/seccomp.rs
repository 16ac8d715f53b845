//! The spec's seccomp profile compiled with libseccomp and loaded into this process.

use crate::plan::{SeccompAction, SeccompPlan};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use std::str::FromStr;
use tsbox_sys::{Result, SysError};

fn action(a: &SeccompAction, field: &str) -> Result<ScmpAction> {
    Ok(match a.kind.as_str() {
        "kill_process" => ScmpAction::KillProcess,
        "kill_thread" => ScmpAction::KillThread,
        "trap" => ScmpAction::Trap,
        "errno" => ScmpAction::Errno(a.value.unwrap_or(libc::EPERM as u32) as i32),
        "trace" => ScmpAction::Trace(a.value.unwrap_or(0) as u16),
        "allow" => ScmpAction::Allow,
        "log" => ScmpAction::Log,
        other => return Err(SysError::new(format!("seccomp action {other} is not supported"), libc::EINVAL).with_field(field)),
    })
}

fn lib_err(step: String, e: libseccomp::error::SeccompError) -> SysError {
    // libseccomp's own errno enum is not a raw errno; the text says what went wrong.
    SysError::new(format!("{step}: {e}"), libc::EINVAL)
}

fn compare(op: &str, value: u64) -> Option<ScmpCompareOp> {
    Some(match op {
        "ne" => ScmpCompareOp::NotEqual,
        "lt" => ScmpCompareOp::Less,
        "le" => ScmpCompareOp::LessOrEqual,
        "eq" => ScmpCompareOp::Equal,
        "ge" => ScmpCompareOp::GreaterEqual,
        "gt" => ScmpCompareOp::Greater,
        // OCI (like runc): `value` is the mask, `valueTwo` the value compared with.
        "masked_eq" => ScmpCompareOp::MaskedEqual(value),
        _ => return None,
    })
}

/// Builds the filter. Done before the process is locked down, loaded at the very end.
pub fn compile(plan: &SeccompPlan) -> Result<ScmpFilterContext> {
    let default = action(&plan.default_action, "linux.seccomp.defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib_err("seccomp: new filter".into(), e))?;
    // no_new_privs is the spec's decision (process.noNewPrivileges), not libseccomp's.
    ctx.set_ctl_nnp(false).map_err(|e| lib_err("seccomp: clear NNP attribute".into(), e))?;
    for arch in &plan.architectures {
        let a = ScmpArch::from_str(arch).map_err(|e| lib_err(format!("seccomp: architecture {arch}"), e))?;
        ctx.add_arch(a).map_err(|e| lib_err(format!("seccomp: add architecture {arch}"), e))?;
    }
    for rule in &plan.rules {
        let act = action(&rule.action, &rule.field)?;
        if act == default {
            continue; // libseccomp refuses rules that repeat the default action
        }
        let mut cmps = Vec::with_capacity(rule.args.len());
        for arg in &rule.args {
            let op = compare(&arg.op, arg.value)
                .ok_or_else(|| SysError::new(format!("seccomp operator {} is not supported", arg.op), libc::EINVAL).with_field(rule.field.clone()))?;
            let datum = if arg.op == "masked_eq" { arg.value_two } else { arg.value };
            cmps.push(ScmpArgCompare::new(arg.index, op, datum));
        }
        for name in &rule.names {
            // Like runc: a syscall this libseccomp or architecture does not know is skipped.
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            let r = if cmps.is_empty() { ctx.add_rule(act, sc) } else { ctx.add_rule_conditional(act, sc, &cmps) };
            r.map_err(|e| lib_err(format!("seccomp: rule for {name}"), e).with_field(rule.field.clone()))?;
        }
    }
    Ok(ctx)
}

pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(|e| lib_err("seccomp: load filter".into(), e).with_field("linux.seccomp"))
}
