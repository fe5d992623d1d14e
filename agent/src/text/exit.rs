//! How a session's child ended, in words: one wording for every output (watch lines,
//! the summary, the screen, `report`).

/// `exit N`, `signal N`, `running` (the run or the trace ended first) or `exit ?`.
pub fn exit_text(complete: bool, exit_code: Option<i32>, exit_signal: Option<i32>) -> String {
    match (complete, exit_code, exit_signal) {
        (false, _, _) => "running".into(),
        (_, Some(c), _) => format!("exit {c}"),
        (_, _, Some(s)) => format!("signal {s}"),
        _ => "exit ?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wording() {
        assert_eq!(exit_text(true, Some(0), None), "exit 0");
        assert_eq!(exit_text(true, None, Some(9)), "signal 9");
        assert_eq!(exit_text(false, None, None), "running");
        assert_eq!(exit_text(false, Some(0), None), "running");
        assert_eq!(exit_text(true, None, None), "exit ?");
    }
}
