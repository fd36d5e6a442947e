//! `${namespace}` in subject names: the one template variable a baseline may use.

const NAMESPACE_VARIABLE: &str = "${namespace}";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template variable {0:?}; only ${{namespace}} is supported")]
    UnknownVariable(String),
    #[error("unterminated \"${{\" in {0:?}")]
    Unterminated(String),
}

/// Checks that every `${...}` in `text` is `${namespace}`.
pub fn check(text: &str) -> Result<(), TemplateError> {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Unterminated(text.to_string()))?;
        let variable = &after[..=end];
        if variable != NAMESPACE_VARIABLE {
            return Err(TemplateError::UnknownVariable(variable.to_string()));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Replaces `${namespace}` with the namespace's name.
pub fn expand(text: &str, namespace: &str) -> String {
    text.replace(NAMESPACE_VARIABLE, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespace_is_known() {
        assert_eq!(check("team-${namespace}-view"), Ok(()));
        assert_eq!(check("plain"), Ok(()));
        assert!(
            matches!(check("${team}"), Err(TemplateError::UnknownVariable(v)) if v == "${team}")
        );
        assert!(matches!(
            check("a-${namespace"),
            Err(TemplateError::Unterminated(_))
        ));
        assert_eq!(
            expand("team-${namespace}:${namespace}", "dev"),
            "team-dev:dev"
        );
    }
}
