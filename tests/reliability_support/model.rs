//! An independent model of the engine's rules, for the crash harness
//! (`tests/reliability_crash.rs`): what writers submit ([`Act`], [`MOp`]), the events the
//! engine must log for it ([`Ev`]), and the store those events describe ([`Model`]), written
//! from the public API's documentation, not from the engine's code.

#![allow(dead_code)]

use ctxlog::event::{Event, Labels};
use ctxlog::state::State;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------- what writers submit

#[derive(Debug, Clone)]
pub enum MOp {
    Create(String, Labels),
    Set(String, String, Vec<u8>),
    Remove(String, String),
    Meta(String, Labels, Vec<String>),
    Delete(String),
}

#[derive(Debug, Clone)]
pub enum Act {
    Update(Vec<MOp>),
    Activate(String),
    Deactivate(String),
    Switch(String),
    Point(String),
    RestoreLabel(String),
    RestoreOffset(u64),
}

// ---------------------------------------------------------------- the model

/// An event as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Created(String, Labels),
    Set(String, String, Vec<u8>),
    Removed(String, String),
    Meta(String, Labels, Vec<String>),
    Deleted(String),
    Restored(String, u64, Option<Image>),
    Activated(String),
    Deactivated(String),
    Switched(Option<String>, String),
    Point(String),
    Other(&'static str),
}

pub type Image = (BTreeMap<String, Vec<u8>>, Labels);

pub fn ev_of(e: &Event) -> Ev {
    match e {
        Event::ContextCreated { context, labels } => Ev::Created(context.clone(), labels.clone()),
        Event::ValueSet {
            context,
            key,
            value,
        } => Ev::Set(context.clone(), key.clone(), value.to_vec()),
        Event::ValueRemoved { context, key } => Ev::Removed(context.clone(), key.clone()),
        Event::MetadataChanged {
            context,
            set,
            removed,
        } => Ev::Meta(context.clone(), set.clone(), removed.clone()),
        Event::ContextDeleted { context } => Ev::Deleted(context.clone()),
        Event::ContextRestored {
            context,
            from_offset,
            image,
        } => Ev::Restored(
            context.clone(),
            from_offset.0,
            image.as_ref().map(|i| {
                let values = i.values.iter().map(|(k, v)| (k.clone(), v.to_vec()));
                (values.collect(), i.labels.clone())
            }),
        ),
        Event::Activated { context } => Ev::Activated(context.clone()),
        Event::Deactivated { context } => Ev::Deactivated(context.clone()),
        Event::Switched { from, to } => Ev::Switched(from.clone(), to.clone()),
        Event::RecoveryPointCreated { label } => Ev::Point(label.clone()),
        other => Ev::Other(other.kind()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MCtx {
    pub values: BTreeMap<String, Vec<u8>>,
    pub labels: Labels,
    pub created: u64,
    pub version: u64,
    pub deleted: bool,
}

/// The whole store as the rules of the public API describe it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub ctxs: BTreeMap<String, MCtx>,
    pub active: BTreeSet<String>,
    pub current: Option<String>,
    pub points: BTreeMap<String, u64>,
    pub offset: u64,
}

impl Model {
    pub fn live(&self, c: &str) -> Option<&MCtx> {
        self.ctxs.get(c).filter(|c| !c.deleted)
    }

    /// The events the engine must log for `act` committed on top of `self`; `history[o]` is
    /// the model after commit `o`.
    pub fn expected(&self, act: &Act, history: &[Model]) -> Result<Vec<Ev>, String> {
        Ok(match act {
            Act::Update(ops) => ops
                .iter()
                .map(|op| match op {
                    MOp::Create(c, l) => Ev::Created(c.clone(), l.clone()),
                    MOp::Set(c, k, v) => Ev::Set(c.clone(), k.clone(), v.clone()),
                    MOp::Remove(c, k) => Ev::Removed(c.clone(), k.clone()),
                    MOp::Meta(c, s, r) => Ev::Meta(c.clone(), s.clone(), r.clone()),
                    MOp::Delete(c) => Ev::Deleted(c.clone()),
                })
                .collect(),
            Act::Activate(c) => vec![Ev::Activated(c.clone())],
            Act::Deactivate(c) => vec![Ev::Deactivated(c.clone())],
            Act::Switch(c) => {
                let from = self.current.clone().filter(|f| f != c);
                vec![Ev::Switched(from, c.clone())]
            }
            Act::Point(l) => vec![Ev::Point(l.clone())],
            Act::RestoreLabel(l) => {
                let at = *self
                    .points
                    .get(l)
                    .ok_or(format!("restore of unknown {l}"))?;
                self.restore_events(at, history)
            }
            Act::RestoreOffset(at) => self.restore_events(*at, history),
        })
    }

    /// One `Restored` event per context whose content differs from its content at `at`.
    pub fn restore_events(&self, at: u64, history: &[Model]) -> Vec<Ev> {
        let target = &history[at as usize];
        let names: BTreeSet<&String> = self.ctxs.keys().chain(target.ctxs.keys()).collect();
        let mut out = Vec::new();
        for n in names {
            let want = target.live(n).map(|c| (c.values.clone(), c.labels.clone()));
            let differs = match (self.live(n), &want) {
                (None, None) => false,
                (Some(c), Some((v, l))) => c.values != *v || c.labels != *l,
                _ => true,
            };
            if differs {
                out.push(Ev::Restored(n.clone(), at, want));
            }
        }
        out
    }

    pub fn live_mut(&mut self, c: &str) -> Result<&mut MCtx, String> {
        self.ctxs
            .get_mut(c)
            .filter(|c| !c.deleted)
            .ok_or_else(|| format!("{c} is not live"))
    }

    pub fn forget(&mut self, c: &str) {
        self.active.remove(c);
        if self.current.as_deref() == Some(c) {
            self.current = None;
        }
    }

    /// Applies the events of the commit at offset `o`, all of them or (on error) the caller
    /// throws the model away.
    pub fn apply(&mut self, o: u64, evs: &[Ev]) -> Result<(), String> {
        for ev in evs {
            match ev {
                Ev::Created(c, labels) => {
                    if self.live(c).is_some() {
                        return Err(format!("create of live {c}"));
                    }
                    let ctx = MCtx {
                        values: BTreeMap::new(),
                        labels: labels.clone(),
                        created: o,
                        version: o,
                        deleted: false,
                    };
                    self.ctxs.insert(c.clone(), ctx);
                }
                Ev::Set(c, k, v) => {
                    let ctx = self.live_mut(c)?;
                    ctx.values.insert(k.clone(), v.clone());
                    ctx.version = o;
                }
                Ev::Removed(c, k) => {
                    let ctx = self.live_mut(c)?;
                    ctx.values
                        .remove(k)
                        .ok_or(format!("remove of absent {c}/{k}"))?;
                    ctx.version = o;
                }
                Ev::Meta(c, set, removed) => {
                    let ctx = self.live_mut(c)?;
                    ctx.labels.extend(set.clone());
                    for k in removed {
                        ctx.labels.remove(k);
                    }
                    ctx.version = o;
                }
                Ev::Deleted(c) => {
                    let ctx = self.live_mut(c)?;
                    (ctx.values, ctx.labels) = Default::default();
                    (ctx.deleted, ctx.version) = (true, o);
                    self.forget(c);
                }
                Ev::Restored(c, _, None) => {
                    if let Ok(ctx) = self.live_mut(c) {
                        (ctx.values, ctx.labels) = Default::default();
                        (ctx.deleted, ctx.version) = (true, o);
                        self.forget(c);
                    }
                }
                Ev::Restored(c, _, Some((values, labels))) => {
                    let created = self.live(c).map_or(o, |x| x.created);
                    let ctx = MCtx {
                        values: values.clone(),
                        labels: labels.clone(),
                        created,
                        version: o,
                        deleted: false,
                    };
                    self.ctxs.insert(c.clone(), ctx);
                }
                Ev::Activated(c) => {
                    self.live_mut(c)?;
                    self.active.insert(c.clone());
                }
                Ev::Deactivated(c) => self.forget(c),
                Ev::Switched(from, to) => {
                    self.live_mut(to)?;
                    if let Some(f) = from {
                        self.active.remove(f);
                    }
                    self.active.insert(to.clone());
                    self.current = Some(to.clone());
                }
                Ev::Point(l) => {
                    if self.points.insert(l.clone(), o).is_some() {
                        return Err(format!("point {l} exists"));
                    }
                }
                Ev::Other(kind) => return Err(format!("unexpected event {kind}")),
            }
        }
        self.offset = o;
        Ok(())
    }

    /// What differs between the model and an engine state.
    pub fn diff(&self, s: &State) -> Option<String> {
        let mut out = Vec::new();
        if s.offset().0 != self.offset {
            out.push(format!(
                "offset: engine {} model {}",
                s.offset(),
                self.offset
            ));
        }
        let names: BTreeSet<&str> = s
            .all_contexts()
            .map(|(n, _)| n)
            .chain(self.ctxs.keys().map(String::as_str))
            .collect();
        for n in names {
            let engine = s.context_any(n).map(|c| MCtx {
                values: c
                    .values()
                    .map(|(k, v)| (k.into(), v.as_bytes().into()))
                    .collect(),
                labels: c.labels(),
                created: c.created().offset.0,
                version: c.version().0,
                deleted: c.is_deleted(),
            });
            if engine.as_ref() != self.ctxs.get(n) {
                out.push(format!(
                    "context {n}: engine {:?} model {:?}",
                    engine.map(|c| (c.deleted, c.version, c.created, c.values.len())),
                    self.ctxs
                        .get(n)
                        .map(|c| (c.deleted, c.version, c.created, c.values.len()))
                ));
            }
        }
        let active: BTreeSet<String> = s.active().map(str::to_string).collect();
        if active != self.active {
            out.push(format!("active: engine {active:?} model {:?}", self.active));
        }
        if s.current() != self.current.as_deref() {
            out.push(format!("current: {:?} / {:?}", s.current(), self.current));
        }
        let points: BTreeMap<String, u64> = s
            .recovery_points()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        if points != self.points || s.default_context().is_some() {
            out.push(format!("points: engine {points:?} model {:?}", self.points));
        }
        (!out.is_empty()).then(|| out.join("; "))
    }
}
