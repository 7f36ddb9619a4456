//! `$NAME` / `${NAME}` expansion with the exact rules of Python's
//! `os.path.expandvars`, which baseplate.py applies to every config value.

/// Expands `$NAME` (NAME is `[A-Za-z0-9_]+`) and `${NAME}` (anything but `}`)
/// using `lookup`. Unknown variables are left as written; there is no
/// escape, so `$$` and a lone `$` stay as they are.
pub fn expand_vars(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut unlimited = usize::MAX;
    expand_within(value, lookup, &mut unlimited).unwrap_or_default()
}

/// [`expand_vars`], spending at most `budget` bytes of output (what is
/// left is written back); `None` when the expansion would exceed it.
pub fn expand_within(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
    budget: &mut usize,
) -> Option<String> {
    if !value.contains('$') {
        *budget = budget.checked_sub(value.len())?;
        return Some(value.to_string());
    }
    let mut out = String::with_capacity(value.len().min(*budget));
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if len == 0 {
            // Not a reference: keep the `$` and look again right after it.
            out.push('$');
            if out.len() > *budget {
                return None;
            }
            rest = after;
            continue;
        }
        match lookup(name) {
            Some(v) => out.push_str(&v),
            // Unset: keep the whole reference and do not look inside it.
            None => out.push_str(&rest[dollar..dollar + 1 + len]),
        }
        if out.len() > *budget {
            return None;
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    *budget = budget.checked_sub(out.len())?;
    Some(out)
}

/// Expands against the process environment, within `budget` bytes. A
/// value without `$` is returned as it is, without a copy.
pub fn expand_env(value: String, budget: &mut usize) -> Option<String> {
    if !value.contains('$') {
        *budget = budget.checked_sub(value.len())?;
        return Some(value);
    }
    expand_within(&value, |name| std::env::var(name).ok(), budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "X_NUM" => Some("n".into()),
            _ => None,
        }
    }

    #[test]
    fn matches_python_expandvars() {
        assert_eq!(expand_vars("${A}/x", env), "alpha/x");
        assert_eq!(expand_vars("$A-$B ${B}", env), "alpha-$B ${B}");
        assert_eq!(
            expand_vars("$X_NUM_SUFFIX $X_NUM-1", env),
            "$X_NUM_SUFFIX n-1"
        );
        assert_eq!(expand_vars("$$ $ ${A", env), "$$ $ ${A");
        assert_eq!(expand_vars("37.2% %(x)s", env), "37.2% %(x)s");
        assert_eq!(expand_vars("${$A} ${} $A", env), "${$A} ${} alpha");
    }
}
