/// When to give an HTTP/2 peer more flow-control credit.
///
/// Cairn's connection handlers decode DATA as it arrives and never queue raw
/// frames, so credit can be returned as soon as a window falls to half of its
/// target; what bounds memory is the per-message size limit, not the window.
/// Shared by the server and client handlers: one policy, one place.
struct InboundWindowPolicy {
    let targetBytes: Int

    /// The WINDOW_UPDATE increment to send for a window now at `currentBytes`,
    /// or `nil` while it is still above half of the target.
    func increment(currentBytes: Int) -> Int? {
        guard currentBytes <= self.targetBytes / 2 else { return nil }
        return self.targetBytes - currentBytes
    }
}
