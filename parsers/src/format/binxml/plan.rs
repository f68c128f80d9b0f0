//! Plans: a record's root template definition compiled one step further,
//! into the few acts that set the event's fields. The compiled ops
//! ([`Op`]) still drive the [`Builder`] element by element, every name
//! matched again for every record; a plan knows, once per chunk, which
//! element of the template is `EventID`, which substitution is the
//! `Channel`, which `Data` is named what, and reads only those values for
//! each record (rendering, for the checks the walk makes, nothing else).
//!
//! The plan is the builder's state machine run ahead of time over the ops:
//! what the builder would do with each element (section, depth, whether it
//! keeps the element's text) depends only on the template, so it is decided
//! when compiling. What depends on the values is decided per record: an
//! element whose DependencyId names a NULL value is skipped, an optional
//! empty substitution adds nothing, an array gives up as the walk does. An
//! embedded BinXML value (whose elements would land in the event) stops
//! the plan, and the record runs through the ops as before; so does any
//! template whose shape the planner does not take (`RenderingInfo`, text
//! around an optional child, a root that is not `<Event>`). The walker's
//! differential tests hold the planned records equal to the XML rendering.

use compact_str::CompactString;

use super::{
    push_utf16, render, text_char, Attr, Cursor, Frame, GiveUp, LazyAttrs, Op, Part, Result, Scope,
    Value, Walker, MAX_NESTING,
};
use crate::event::Level;
use crate::extract::vm_id_from_user;
use crate::format::event_xml::{section_of, Attrs, Builder, Section};

/// Where an attribute's value comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Src {
    /// Not there (or empty: an empty attribute reads as absent).
    Absent,
    /// Known when the plan was made: index in [`Walker::plan_strings`].
    Const(u32),
    /// Rendered per record from its parts.
    Attr(Attr),
}

/// The field an element's text sets.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    EventId,
    Version,
    Level,
    RecordId,
    Channel,
    Computer,
    /// An `EventData` child: named by its `Name` attribute, else `paramN`
    /// when it is a `<Data>`, else by the element's own name.
    Data {
        name: Src,
        data: bool,
        element: u32,
    },
    /// A `UserData` element (depth 3 and below), named by itself.
    User(u32),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Act {
    /// Skip to act `to` when value `dependency` is NULL: a left-out element.
    SkipIfNull {
        dependency: u16,
        to: u32,
    },
    /// Text the builder reads and then drops (a child element starts):
    /// rendered for the checks the walk makes.
    Check(Part),
    /// Substitutions in elements whose text nothing keeps, one after the
    /// other (`act_subs` range).
    Subs {
        from: u32,
        to: u32,
    },
    Provider {
        name: Src,
        source: Src,
    },
    Time(Option<Attr>),
    Security(Src),
    /// An element's text (its parts, `act_parts` range) sets `target`.
    Field {
        target: Target,
        parts: (u32, u32),
    },
}

/// A substitution in an element whose text nothing keeps: checked as the
/// walk checks it; embedded BinXML is walked into the builder, set up as
/// inside the elements open there (`act_names` range).
#[derive(Debug, Clone, Copy)]
pub(super) struct SubCheck {
    index: usize,
    optional: bool,
    open: (u32, u32),
}

/// An element open while planning.
struct Open {
    name: u32,
    /// Keeps its text (as the builder's `wants_text`).
    wants: bool,
    target: Option<Target>,
    /// Its content parts since its last child.
    parts: Vec<Part>,
    /// Its `SkipIfNull` act, whose target is set at its end.
    skip: Option<usize>,
}

impl Walker {
    /// The plan of the template definition at `def` (ops `ops`), made on
    /// first use in the chunk; `None`: the ops run instead. `within`: the
    /// [`SubCheck`] (index in `act_subs`) whose embedded fragment is an
    /// instance of it, which says which elements are open around it;
    /// `None`: the record's root template.
    pub(super) fn plan(
        &mut self,
        data: &[u8],
        def: u32,
        within: Option<usize>,
        ops: (usize, usize),
    ) -> Option<(usize, usize)> {
        if within.is_none() {
            if let Some(plan) = self.recent_roots.get(def) {
                return plan;
            }
        }
        let key = u64::from(def) << 32 | within.map_or(0, |sub| sub as u64 + 1);
        if let Some(&plan) = self.plans.get(&key) {
            if within.is_none() {
                self.recent_roots.insert(def, plan);
            }
            return plan;
        }
        let open = within.map_or((0, 0), |sub| self.act_subs[sub].open);
        let (acts, parts, names, subs, strings) = (
            self.acts.len(),
            self.act_parts.len(),
            self.act_names.len(),
            self.act_subs.len(),
            self.plan_strings.len(),
        );
        let plan = match self.make_plan(data, ops, open) {
            Ok(()) => Some((acts, self.acts.len())),
            Err(_) => {
                self.acts.truncate(acts);
                self.act_parts.truncate(parts);
                self.act_names.truncate(names);
                self.act_subs.truncate(subs);
                self.plan_strings.truncate(strings);
                None
            }
        };
        self.plans.insert(key, plan);
        if within.is_none() {
            self.recent_roots.insert(def, plan);
        }
        plan
    }

    /// The value source of the first attribute named `name` of a start tag.
    fn src(&mut self, data: &[u8], attrs: (usize, usize), name: &str) -> Result<Src> {
        let Some(attr) = self.op_attrs[attrs.0..attrs.1]
            .iter()
            .find(|a| self.names[a.name as usize] == name)
            .copied()
        else {
            return Ok(Src::Absent);
        };
        let parts = &self.op_parts[attr.parts.0..attr.parts.1];
        if parts.iter().any(|p| matches!(p, Part::Sub { .. })) {
            return Ok(Src::Attr(attr));
        }
        // Text only: the same for every record.
        let lazy = LazyAttrs {
            data,
            names: &self.names,
            attrs: &[],
            parts: &self.op_parts,
            values: &[],
            frame: None,
            failed: None,
        };
        let text = lazy
            .render(&attr)
            .map_err(|_| GiveUp("constant attribute"))?;
        if text.is_empty() {
            return Ok(Src::Absent);
        }
        self.plan_strings.push(text.into());
        Ok(Src::Const(self.plan_strings.len() as u32 - 1))
    }

    fn make_plan(
        &mut self,
        data: &[u8],
        (from, to): (usize, usize),
        within: (u32, u32),
    ) -> Result<()> {
        // The elements open around the template (none for a root one): their
        // text is not kept (else no `SubCheck` would stand there).
        let mut open: Vec<Open> = self.act_names[within.0 as usize..within.1 as usize]
            .iter()
            .map(|&name| Open {
                name,
                wants: false,
                target: None,
                parts: Vec::new(),
                skip: None,
            })
            .collect();
        let context = open.len();
        let mut section = match open.get(1) {
            Some(o) => section_of(&self.names[o.name as usize]),
            None => Section::None,
        };
        if section == Section::RenderingInfo {
            return Err(GiveUp("RenderingInfo"));
        }
        let mut saw_root = context > 0;
        // Acts before this one may not take more substitutions: a skip
        // lands here.
        let mut floor = 0;
        for i in from..to {
            match self.ops[i] {
                Op::Start {
                    name,
                    dependency,
                    attrs,
                    empty,
                    root,
                    ..
                } => {
                    let depth = open.len();
                    let skip = dependency.filter(|_| !root);
                    if let Some(parent) = open.last_mut() {
                        // The builder drops its parent's text so far; a
                        // child that may be left out would make that vary.
                        if skip.is_some() && parent.wants {
                            return Err(GiveUp("optional child of kept text"));
                        }
                        let dropped = std::mem::take(&mut parent.parts);
                        for part in dropped {
                            self.acts.push(Act::Check(part));
                        }
                    }
                    let skip = skip.map(|dependency| {
                        self.acts.push(Act::SkipIfNull { dependency, to: 0 });
                        self.acts.len() - 1
                    });
                    let element = self.names[name as usize].clone();
                    let element = element.as_str();
                    let mut target = None;
                    let mut wants = false;
                    match depth {
                        0 => {
                            if element != "Event" || saw_root {
                                return Err(GiveUp("root"));
                            }
                            saw_root = true;
                        }
                        1 => {
                            section = section_of(element);
                            if section == Section::RenderingInfo {
                                return Err(GiveUp("RenderingInfo"));
                            }
                        }
                        _ => {}
                    }
                    match section {
                        Section::System if depth == 2 => match element {
                            "Provider" => {
                                let name = self.src(data, attrs, "Name")?;
                                let source = self.src(data, attrs, "EventSourceName")?;
                                self.acts.push(Act::Provider { name, source });
                            }
                            "TimeCreated" => {
                                let attr = self.op_attrs[attrs.0..attrs.1]
                                    .iter()
                                    .find(|a| self.names[a.name as usize] == "SystemTime")
                                    .copied();
                                self.acts.push(Act::Time(attr));
                            }
                            "Security" => {
                                let user = self.src(data, attrs, "UserID")?;
                                self.acts.push(Act::Security(user));
                            }
                            "EventID" => target = Some(Target::EventId),
                            "Version" => target = Some(Target::Version),
                            "Level" => target = Some(Target::Level),
                            "EventRecordID" => target = Some(Target::RecordId),
                            "Channel" => target = Some(Target::Channel),
                            "Computer" => target = Some(Target::Computer),
                            _ => {}
                        },
                        Section::EventData if depth == 2 => {
                            target = Some(Target::Data {
                                name: self.src(data, attrs, "Name")?,
                                data: element == "Data",
                                element: name,
                            });
                        }
                        Section::UserData if depth >= 3 => target = Some(Target::User(name)),
                        _ => {}
                    }
                    if target.is_some() {
                        wants = true;
                    }
                    open.push(Open {
                        name,
                        wants,
                        target,
                        parts: Vec::new(),
                        skip,
                    });
                    if empty && self.close(&mut open, &mut section) {
                        floor = self.acts.len();
                    }
                }
                Op::End => {
                    if open.len() <= context {
                        return Err(GiveUp("unbalanced"));
                    }
                    if self.close(&mut open, &mut section) {
                        floor = self.acts.len();
                    }
                }
                Op::Content(part) => match open.last_mut() {
                    Some(top) if top.wants => top.parts.push(part),
                    _ => {
                        if let Part::Sub { index, optional } = part {
                            let from = self.act_names.len() as u32;
                            self.act_names.extend(open.iter().map(|o| o.name));
                            let to = self.act_names.len() as u32;
                            self.act_subs.push(SubCheck {
                                index,
                                optional,
                                open: (from, to),
                            });
                            let sub = self.act_subs.len() as u32;
                            let last = self.acts.len().checked_sub(1).filter(|&l| l >= floor);
                            match last.map(|l| &mut self.acts[l]) {
                                Some(Act::Subs { to, .. }) if *to + 1 == sub => *to = sub,
                                _ => self.acts.push(Act::Subs {
                                    from: sub - 1,
                                    to: sub,
                                }),
                            }
                        }
                    }
                },
            }
        }
        if open.len() != context || !saw_root {
            return Err(GiveUp("unclosed"));
        }
        Ok(())
    }

    /// The innermost open element ends. True when a skip now lands after it.
    fn close(&mut self, open: &mut Vec<Open>, section: &mut Section) -> bool {
        let Some(element) = open.pop() else {
            return false;
        };
        if let Some(target) = element.target {
            let from = self.act_parts.len() as u32;
            self.act_parts.extend_from_slice(&element.parts);
            let parts = (from, self.act_parts.len() as u32);
            self.acts.push(Act::Field { target, parts });
        }
        if open.len() == 1 {
            *section = Section::None;
        }
        let Some(skip) = element.skip else {
            return false;
        };
        let end = self.acts.len();
        if end == skip + 1 {
            // Nothing to skip: the element has no acts.
            self.acts.pop();
            return false;
        }
        if let Act::SkipIfNull { to, .. } = &mut self.acts[skip] {
            *to = end as u32;
        }
        true
    }

    /// Runs a plan with a template instance's values into a fresh builder.
    /// `Ok(false)`: a value the plan does not take (embedded BinXML); the
    /// caller resets the builder and runs the ops instead.
    pub(super) fn execute(
        &mut self,
        data: &[u8],
        (from, to): (usize, usize),
        frame: Frame,
        scope: Scope,
        builder: &mut Builder,
        text: &mut String,
    ) -> Result<bool> {
        builder.plan_started();
        let mut i = from;
        while i < to {
            if let Act::Subs { from, to } = self.acts[i] {
                for sub in from as usize..to as usize {
                    if !self.sub_check(data, sub, frame, scope, builder, text)? {
                        return Ok(false);
                    }
                }
                i += 1;
                continue;
            }
            match self.act(data, i, frame, builder, text)? {
                Step::Next => i += 1,
                Step::Jump(to) => i = to,
                Step::Unplanned => return Ok(false),
            }
        }
        Ok(true)
    }

    /// One [`SubCheck`]; `Ok(false)`: the plan cannot go on.
    fn sub_check(
        &mut self,
        data: &[u8],
        sub: usize,
        frame: Frame,
        scope: Scope,
        builder: &mut Builder,
        text: &mut String,
    ) -> Result<bool> {
        let SubCheck {
            index,
            optional,
            open,
        } = self.act_subs[sub];
        let Some(value) = frame.content_value(&self.values, index, optional)? else {
            return Ok(true);
        };
        if value.ty != 0x21 {
            return Ok(true);
        }
        // An embedded fragment: its elements go where the substitution is.
        // One template instance runs its plan.
        if let Some(planned) = self.nested(data, value, sub, scope, builder, text)? {
            return Ok(planned);
        }
        let open = &self.act_names[open.0 as usize..open.1 as usize];
        let depth = open.len();
        builder.enter(open.iter().map(|&n| self.names[n as usize].as_str()));
        self.walk_fragment(data, value, scope, builder)?;
        builder.leave(depth).map_err(|_| GiveUp("structure"))?;
        Ok(true)
    }

    /// An embedded fragment (`value`, at the [`SubCheck`] `sub`) that is one
    /// template instance, run by its plan. `None`: any other fragment, or
    /// one without a plan, which the caller walks.
    fn nested(
        &mut self,
        data: &[u8],
        value: Value,
        sub: usize,
        scope: Scope,
        builder: &mut Builder,
        text: &mut String,
    ) -> Result<Option<bool>> {
        let end = value.start + value.len;
        if value.len < 5 {
            return Ok(None);
        }
        let mut c = Cursor {
            data,
            pos: value.start,
        };
        if c.u8()? != 0x0f {
            return Ok(None);
        }
        c.bytes(3)?;
        if c.u8()? != 0x0c {
            return Ok(None);
        }
        if scope.depth + 1 > MAX_NESTING {
            return Err(GiveUp("nesting"));
        }
        let base = self.values.len();
        let result = self.nested_instance(data, &mut c, end, sub, scope, builder, text);
        self.values.truncate(base);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn nested_instance(
        &mut self,
        data: &[u8],
        c: &mut Cursor<'_>,
        end: usize,
        sub: usize,
        scope: Scope,
        builder: &mut Builder,
        text: &mut String,
    ) -> Result<Option<bool>> {
        let instance = self.instance(c)?;
        // Nothing but the end of the fragment may follow.
        if c.pos < end && data[c.pos] != 0x00 {
            return Ok(None);
        }
        let Some(ops) = self.program(data, instance.def, instance.body, instance.end) else {
            return Ok(None);
        };
        let Some(plan) = self.plan(data, instance.def, Some(sub), ops) else {
            return Ok(None);
        };
        let scope = Scope {
            frame: Some(instance.frame),
            depth: scope.depth + 2,
        };
        self.execute(data, plan, instance.frame, scope, builder, text)
            .map(Some)
    }

    /// One act (but [`Act::Subs`]).
    fn act(
        &self,
        data: &[u8],
        act: usize,
        frame: Frame,
        builder: &mut Builder,
        text: &mut String,
    ) -> Result<Step> {
        let values = &self.values[frame.base..frame.base + frame.len];
        {
            match self.acts[act] {
                Act::Subs { .. } => {}
                Act::SkipIfNull { dependency, to } => {
                    if values
                        .get(usize::from(dependency))
                        .is_some_and(|v| v.ty == 0)
                    {
                        return Ok(Step::Jump(to as usize));
                    }
                }
                Act::Check(part) => {
                    text.clear();
                    if !content(data, &self.values, frame, part, text)? {
                        return Ok(Step::Unplanned);
                    }
                }
                Act::Provider { name, source } => {
                    let event = builder.event_mut();
                    let mut found = false;
                    for src in [name, source] {
                        text.clear();
                        if attr_value(src, self, data, frame, text)? {
                            found = true;
                            break;
                        }
                    }
                    if found {
                        set(&mut event.provider, text);
                    }
                }
                Act::Time(Some(attr)) => {
                    let mut lazy = LazyAttrs {
                        data,
                        names: &self.names,
                        attrs: std::slice::from_ref(&attr),
                        parts: &self.op_parts,
                        values: &self.values,
                        frame: Some(frame),
                        failed: None,
                    };
                    let time = lazy.time(&self.names[attr.name as usize]);
                    if let Some(e) = lazy.failed {
                        return Err(e);
                    }
                    if let Some(time) = time {
                        builder.event_mut().timestamp = time;
                        builder.saw_time();
                    }
                }
                Act::Time(None) => {}
                Act::Security(src) => {
                    if not_a_vm_sid(src, self, data, frame)? {
                        return Ok(Step::Next);
                    }
                    text.clear();
                    if attr_value(src, self, data, frame, text)? {
                        if let Some(vm_id) = vm_id_from_user(text) {
                            builder.event_mut().vm_id = Some(vm_id);
                        }
                    }
                }
                Act::Field { target, parts } => {
                    let parts = &self.act_parts[parts.0 as usize..parts.1 as usize];
                    // Integers straight from their bytes.
                    if let (
                        Target::EventId | Target::Version | Target::Level | Target::RecordId,
                        [Part::Sub { index, .. }],
                    ) = (target, parts)
                    {
                        if let Some(n) = values.get(*index).and_then(|v| unsigned(data, v)) {
                            match target {
                                Target::EventId => {
                                    builder.event_mut().event_id = u32::try_from(n).unwrap_or(0)
                                }
                                Target::Version => {
                                    builder.event_mut().version = u8::try_from(n).ok()
                                }
                                Target::Level => builder.set_level(Some(Level::from_number(n))),
                                _ => builder.event_mut().record_id = Some(n),
                            }
                            return Ok(Step::Next);
                        }
                    }
                    // A `Data`'s name, read at its start as the builder reads it.
                    let field = match target {
                        Target::Data {
                            name,
                            data: is_data,
                            element,
                        } => {
                            text.clear();
                            Some(if let Src::Const(i) = name {
                                self.plan_strings[i as usize].clone()
                            } else if attr_value(name, self, data, frame, text)? {
                                CompactString::from(text.as_str())
                            } else if is_data {
                                let n = builder.next_unnamed();
                                compact_str::format_compact!("param{n}")
                            } else {
                                self.names[element as usize].clone()
                            })
                        }
                        _ => None,
                    };
                    text.clear();
                    for &part in parts {
                        if !content(data, &self.values, frame, part, text)? {
                            return Ok(Step::Unplanned);
                        }
                    }
                    let value = text.trim();
                    match target {
                        Target::EventId => {
                            builder.event_mut().event_id = value.parse().unwrap_or(0)
                        }
                        Target::Version => builder.event_mut().version = value.parse().ok(),
                        Target::Level => {
                            let level = value.parse::<u64>().ok().map(Level::from_number);
                            builder.set_level(level);
                        }
                        Target::RecordId => builder.event_mut().record_id = value.parse().ok(),
                        Target::Channel => set(&mut builder.event_mut().channel, value),
                        Target::Computer => set(&mut builder.event_mut().host, value),
                        Target::Data { .. } => {
                            if let Some(field) = field {
                                builder.event_mut().data.insert(field, value);
                            }
                        }
                        Target::User(name) => {
                            let name = &self.names[name as usize];
                            let event = builder.event_mut();
                            if !value.is_empty() || event.data.get(name).is_none() {
                                event.data.insert(name.clone(), value);
                            }
                        }
                    }
                }
            }
        }
        Ok(Step::Next)
    }
}

/// What follows an act.
enum Step {
    Next,
    Jump(usize),
    /// A value the plan does not take.
    Unplanned,
}

/// True when the user attribute is one SID value that is not a VM's
/// (`S-1-5-83-…`), so it names no VM id and need not be rendered; its size
/// is checked as rendering checks it.
fn not_a_vm_sid(src: Src, walker: &Walker, data: &[u8], frame: Frame) -> Result<bool> {
    let Src::Attr(attr) = src else {
        return Ok(false);
    };
    let [Part::Sub { index, .. }] = walker.op_parts[attr.parts.0..attr.parts.1] else {
        return Ok(false);
    };
    if index >= frame.len {
        return Ok(false);
    }
    let value = walker.values[frame.base + index];
    if value.ty != 0x13 {
        return Ok(false);
    }
    let b = &data[value.start..value.start + value.len];
    let [revision, count, 0, 0, 0, 0, 0, authority, ref subs @ ..] = *b else {
        return Ok(false);
    };
    if subs.len() < usize::from(count) * 4 {
        return Err(GiveUp("short SID"));
    }
    Ok(revision != 1 || authority != 5 || count < 2 || subs[..4] != [83, 0, 0, 0])
}

/// Replaces a string's text, keeping its allocation.
fn set(field: &mut CompactString, value: &str) {
    field.clear();
    field.push_str(value);
}

/// An unsigned integer value (UInt8 … UInt64) of the right size.
fn unsigned(data: &[u8], value: &Value) -> Option<u64> {
    let size = match value.ty {
        0x04 => 1,
        0x06 => 2,
        0x08 => 4,
        0x0a => 8,
        _ => return None,
    };
    if value.len != size {
        return None;
    }
    let mut le = [0u8; 8];
    le[..size].copy_from_slice(&data[value.start..value.start + size]);
    Some(u64::from_le_bytes(le))
}

/// A content part as the walk treats it, its text appended to `out`.
/// `Ok(false)`: embedded BinXML, which the plan does not take here.
fn content(
    data: &[u8],
    values: &[Value],
    frame: Frame,
    part: Part,
    out: &mut String,
) -> Result<bool> {
    match part {
        Part::Text { start, units } => push_utf16(out, &data[start..start + units * 2])?,
        Part::Char(c) => out.push(text_char(c)?),
        Part::Sub { index, optional } => {
            let Some(value) = frame.content_value(values, index, optional)? else {
                return Ok(true);
            };
            if value.ty == 0x21 {
                return Ok(false);
            }
            render(out, value.ty, &data[value.start..value.start + value.len])?;
        }
    }
    Ok(true)
}

/// An attribute's value into `out` as the builder reads it (absent or
/// empty: `false`).
fn attr_value(
    src: Src,
    walker: &Walker,
    data: &[u8],
    frame: Frame,
    out: &mut String,
) -> Result<bool> {
    match src {
        Src::Absent => Ok(false),
        Src::Const(i) => {
            out.push_str(&walker.plan_strings[i as usize]);
            Ok(true)
        }
        Src::Attr(attr) => {
            let lazy = LazyAttrs {
                data,
                names: &walker.names,
                attrs: &[],
                parts: &walker.op_parts,
                values: &walker.values,
                frame: Some(frame),
                failed: None,
            };
            let from = out.len();
            lazy.render_into(&attr, out)?;
            Ok(out.len() > from)
        }
    }
}
