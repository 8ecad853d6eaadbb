//! `mayu inventory push|pull`.
