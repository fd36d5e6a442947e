//! Undo on the way out: a guard that runs a closure when dropped, also when the test panics, so
//! a paused operator is resumed or a swapped CRD restored whatever the test's outcome.

/// Runs `f` when the returned guard is dropped.
pub fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
