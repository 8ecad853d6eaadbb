//! Templates: the live set served from memory, swapped atomically by the hot reloader only
//! after the new set parses and test-renders; on any error the last good set keeps serving.

mod cache;
pub mod context;
pub mod ignition;
pub mod set;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::Config;
use crate::events::{Bus, EventKind};
use crate::machine::Machine;
pub use set::{Kind, TemplateError, TemplateSet};
pub use watch::watch;

/// How the last reload went, for the API and the console.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadStatus {
    /// when the set now serving was loaded.
    #[serde(with = "time::serde::rfc3339")]
    pub loaded_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_attempt: OffsetDateTime,
    /// problems of the last attempt (empty when it succeeded).
    pub errors: Vec<String>,
    pub templates: Vec<String>,
    pub reloads: u64,
    pub failures: u64,
}

pub struct Templates {
    config: Config,
    current: RwLock<Arc<TemplateSet>>,
    status: Mutex<ReloadStatus>,
    cache: cache::RenderCache,
}

/// Why a render produced nothing to serve.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("machine {id} has no profile")]
    NoProfile { id: String },
    #[error("profile `{profile}` has no {kind} template")]
    NoTemplate { profile: String, kind: &'static str },
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("machine {id} cannot be put into the template context: {source}")]
    Context {
        id: String,
        source: serde_json::Error,
    },
}

/// Loads and validates a set; what `mayu check` and every reload run.
pub fn build(config: &Config) -> Result<TemplateSet, Vec<TemplateError>> {
    let set = TemplateSet::load(&config.templates)?;
    let errors = set.validate(config);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

impl Templates {
    pub fn load(config: &Config) -> Result<Templates, Vec<TemplateError>> {
        let set = build(config)?;
        let now = OffsetDateTime::now_utc();
        Ok(Templates {
            config: config.clone(),
            status: Mutex::new(ReloadStatus {
                loaded_at: now,
                last_attempt: now,
                errors: Vec::new(),
                templates: set.names.clone(),
                reloads: 0,
                failures: 0,
            }),
            current: RwLock::new(Arc::new(set)),
            cache: cache::RenderCache::default(),
        })
    }

    pub fn current(&self) -> Arc<TemplateSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Builds a new set from disk; swaps it in only if it is wholly good. Announces the result.
    pub fn reload(&self, bus: &Bus) -> Result<(), Vec<TemplateError>> {
        let result = build(&self.config);
        let now = OffsetDateTime::now_utc();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.last_attempt = now;
        match result {
            Ok(set) => {
                status.loaded_at = now;
                status.errors.clear();
                status.templates = set.names.clone();
                status.reloads += 1;
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                self.cache.clear();
                drop(status);
                tracing::info!("templates reloaded");
                bus.publish(EventKind::TemplatesReloaded {
                    ok: true,
                    errors: Vec::new(),
                });
                Ok(())
            }
            Err(errors) => {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                status.errors = lines.clone();
                status.failures += 1;
                drop(status);
                tracing::warn!(errors = ?lines, "template reload refused; the last good set keeps serving");
                bus.publish(EventKind::TemplatesReloaded {
                    ok: false,
                    errors: lines,
                });
                Err(errors)
            }
        }
    }

    /// Renders what machine `m` is served for `kind` from the live set.
    pub fn render(&self, boot: SocketAddr, m: &Machine, kind: Kind) -> Result<String, RenderError> {
        let profile = m
            .profile
            .as_deref()
            .and_then(|p| self.config.profile(p))
            .ok_or_else(|| RenderError::NoProfile {
                id: m.id.to_string(),
            })?;
        let name = kind
            .template_of(profile)
            .ok_or_else(|| RenderError::NoTemplate {
                profile: profile.name.clone(),
                kind: kind.as_str(),
            })?;
        let ctx = context::build(&self.config, boot, Some(profile), m).map_err(|source| {
            RenderError::Context {
                id: m.id.to_string(),
                source,
            }
        })?;
        Ok(self.current().render(name, kind, &ctx)?)
    }

    /// [`Templates::render`], answered from memory while machine revision `rev` (see
    /// `engine::Written::rev`), the live set and the machine's asset folder are unchanged.
    /// Phase times are not part of a revision: the cached output keeps those of its render.
    pub fn render_cached(
        &self,
        boot: SocketAddr,
        m: &Machine,
        rev: u64,
        kind: Kind,
    ) -> Result<Arc<str>, RenderError> {
        let set = self.current();
        let assets = m
            .profile
            .as_deref()
            .and_then(|p| self.config.profile(p))
            .map(|p| crate::images::asset_dir(&self.config, p, &m.overrides))
            .unwrap_or_default();
        if let Some(body) = self.cache.get(&m.id, kind, rev, &set, &assets) {
            return Ok(body);
        }
        let body: Arc<str> = Arc::from(self.render(boot, m, kind)?);
        self.cache.put(&m.id, kind, rev, set, assets, body.clone());
        Ok(body)
    }
}
