//! Admission: the tracker asks a pluggable verifier whether an announce's ticket admits this
//! peer id to this stream. `shoal serve` plugs in the API's HMAC tickets
//! (`shoal_proto::ticket`); tests and local demos use [`AllowAll`].

/// What an announce claims, for the verifier to check against the ticket.
#[derive(Clone, Copy, Debug)]
pub struct TicketRequest<'a> {
    /// The ticket text exactly as the client sent it (bounded by `MAX_TICKET_LEN`).
    pub ticket: &'a str,
    pub peer_id: &'a str,
    pub stream: &'a str,
    pub rendition: &'a str,
    /// Wall clock, Unix milliseconds.
    pub now_unix_ms: u64,
}

/// Decides whether a ticket admits an announce. The `Err` text goes to the client in the
/// `unauthorized` error, so it must not leak secrets.
pub trait TicketVerifier: Send + Sync + 'static {
    fn verify(&self, req: &TicketRequest<'_>) -> Result<(), String>;
}

impl<F> TicketVerifier for F
where
    F: Fn(&TicketRequest<'_>) -> Result<(), String> + Send + Sync + 'static,
{
    fn verify(&self, req: &TicketRequest<'_>) -> Result<(), String> {
        self(req)
    }
}

/// Admits everyone (local demo, tests, or a tracker behind another admission layer).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl TicketVerifier for AllowAll {
    fn verify(&self, _req: &TicketRequest<'_>) -> Result<(), String> {
        Ok(())
    }
}
