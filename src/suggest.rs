//! "Did you mean": the message for a name that is not registered, with the
//! closest registered name when it looks like a typo.

/// `KIND "name" is not registered in this binary; registered: a, b (did you mean "a"?)`.
pub(crate) fn not_registered<'a>(
    kind: &str,
    name: &str,
    known: impl Iterator<Item = &'a String> + Clone,
) -> String {
    let list: Vec<&str> = known.clone().map(String::as_str).collect();
    let mut message = format!(
        "{kind} {name:?} is not registered in this binary; registered: {}",
        if list.is_empty() {
            "(none)".to_string()
        } else {
            list.join(", ")
        }
    );
    if let Some(best) = nearest(name, &list) {
        message.push_str(&format!(" (did you mean {best:?}?)"));
    }
    message
}

/// The candidate closest to `name` by edit distance, if it is close enough
/// to be a plausible typo.
pub(crate) fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["baseplate.examples.http:make_app", "other:app"];
        assert_eq!(
            nearest("baseplate.examples.http:make_ap", &names),
            Some("baseplate.examples.http:make_app")
        );
        assert_eq!(nearest("zzz", &names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
