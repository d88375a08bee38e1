//! Analysis conditions: the `successCondition` and `failureCondition` of a metric, written
//! in [CEL](https://github.com/google/cel-spec) and judged against `result`, the measured
//! value.
//!
//! # The `result` variable
//!
//! `result` is the only variable. It is bound from the [`MetricValue`]:
//!
//! | measured value                 | `result` in CEL                                        |
//! |--------------------------------|--------------------------------------------------------|
//! | `Scalar(x)` (Prometheus)       | a `double`                                             |
//! | `Vector(xs)` (Prometheus)      | a `list` of `double`s, in the order Prometheus gave    |
//! | `Json(v)` (web, job providers) | `null`, `bool`, `int` for an integral number (`uint` past `i64::MAX`), `double` otherwise, `string`, `list`, or a `map` with string keys |
//!
//! So `result[0] >= 0.95`, `result >= 0.95`, `result.ok == true`,
//! `result.items[0].status == "healthy"` read as in Argo Rollouts, and Argo's
//! `all(result, {# > 0.9})` is CEL's `result.all(x, x > 0.9)`.
//!
//! # Ints and doubles
//!
//! CEL keeps `int` and `double` apart, but users write `result == 1` and `result[0] * 100`
//! for a `double` result. The rule here:
//!
//! - Comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`) between an `int` (or `uint`) and a
//!   `double` compare the numbers. cel 0.15 does that itself, so nothing is rewritten for
//!   them.
//! - Arithmetic (`+`, `-`, `*`, `/`) with one `double` and one `int` (or `uint`) operand is
//!   done in `double`: `result[0] * 100` works. Plain CEL refuses that; [`Condition`]
//!   routes these operators through a helper that converts the integer operand first and
//!   otherwise does exactly what the operator does (`int + int` stays an `int`,
//!   `"a" + "b"` is still `"ab"`). List indexes are left alone: `result[0]` indexes with an
//!   `int`.
//!
//! # NaN
//!
//! A NaN equals nothing (`result == result` is false for NaN), and *ordering* a NaN
//! (`result < 0.05`) is an evaluation error in cel 0.15, not `false` as in IEEE 754. Guard
//! with `isNaN(result) || result < 0.05` (`||` short-circuits, and in CEL `error || true`
//! is `true`) or with `default(result, 0) < 0.05`.
//!
//! # Helpers
//!
//! Besides the CEL standard library (`size`, `has`, `all`, `exists`, `exists_one`, `map`,
//! `filter`, `int`, `double`, `string`, `matches`, …):
//!
//! - `isNaN(x)`: true when `x` is a NaN `double`; false for any other number.
//! - `isInf(x)`: true when `x` is `+Inf` or `-Inf`; false for any other number.
//! - `len(x)`: the same as `size(x)`, for a list, map, string or bytes.
//! - `default(x, d)`: `x`, unless `x` is `null`, a NaN, or evaluating `x` fails (an index
//!   out of range, a missing key, …); then `d`. `x` is evaluated lazily, so
//!   `default(result[0], 0) >= 0.95` is simply `false` for an empty vector, and `d` is only
//!   evaluated when needed.
//!
//! cel 0.15 evaluates the arguments of a function before calling it and stops at the first
//! error, so `default` cannot be an ordinary function. Instead, compiling moves both
//! arguments of every `default(x, d)` call out of the expression tree into a side table,
//! and leaves a call to an internal function that evaluates them, in the caller's scope,
//! when it is reached.
//!
//! # Checking
//!
//! [`Condition::compile`] (and [`check`], which is `compile` without keeping the result)
//! refuses an expression that does not parse, that names a variable other than `result`
//! (or a comprehension's own variable), or that calls a function that does not exist, so a
//! typo such as `reslt[0] > 1` or `isNan(result)` is reported when the template is
//! checked, not at the first measurement. Function names are checked, not how they are
//! called: `result.int()` passes, and fails when evaluated. Whether the *types* fit is only
//! known once `result` is: `result.ok` on a scalar is an evaluation error.
//!
//! An expression longer than 4 KiB, or nesting more than 100 levels, is refused too: cel
//! 0.15 parses and evaluates recursively, and overflowing the stack would abort the
//! process. (Its parser, in an unoptimized build, already needs more than a 2 MiB stack
//! for 15 nested parentheses; optimized, it handles the 96 levels it accepts.)
//!
//! # Threads
//!
//! A [`Condition`] is `Send + Sync`: it holds the expression tree and a shared,
//! immutable [`Env`], and builds a fresh evaluation [`Context`] on each
//! [`Condition::evaluate`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators,
};
use cel::common::functions::Function;
use cel::common::types::{
    BYTES_TYPE, CelBool, CelDouble, CelInt, CelUInt, DOUBLE_TYPE, INT_TYPE, LIST_TYPE, MAP_TYPE,
    STRING_TYPE, UINT_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::parser::{Expression, ParseErrors};
use cel::{Context, DeclarationError, Env, ExecutionError, FunctionContext, Value};

use super::value::MetricValue;

/// The one variable a condition sees.
const RESULT: &str = "result";

/// The user-facing name of the lazy fallback helper.
const DEFAULT: &str = "default";

/// The internal function a `default(x, d)` call is rewritten to. `@` cannot start an
/// identifier in CEL source, so no expression can call it directly.
const LAZY_DEFAULT: &str = "@sluice_default";

/// The longest expression accepted, in bytes. cel 0.15's parser recurses once per term of
/// a chain like `a + b + …` and overflows a 2 MiB thread stack near 10 000 terms (about
/// 70 KiB), aborting the process; real conditions are a line or two.
const MAX_LEN: usize = 4096;

/// The helpers this module adds, with the number of arguments each takes, for [`check`].
const HELPERS: [(&str, usize); 4] = [("isNaN", 1), ("isInf", 1), ("len", 1), (DEFAULT, 2)];

/// A compiled `successCondition` / `failureCondition`.
///
/// It is `Send + Sync` (see the module documentation): compile it once and evaluate it
/// against each measurement, from any thread.
#[derive(Clone)]
pub struct Condition {
    source: String,
    /// The expression, with `default` calls and mixed-number arithmetic rewritten.
    expr: Expression,
    /// The arguments of the `default(x, d)` calls, indexed by the literal argument of
    /// their [`LAZY_DEFAULT`] call.
    defaults: Arc<[LazyDefault]>,
    env: Arc<Env>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The two arguments of a `default(value, fallback)` call, evaluated only when reached.
#[derive(Debug)]
struct LazyDefault {
    value: Expression,
    fallback: Expression,
}

/// Why a condition could not be compiled or judged.
#[derive(Debug, thiserror::Error)]
pub enum ConditionError {
    /// The expression does not parse, or names an unknown variable or function.
    #[error("condition `{expr}` is invalid: {message}")]
    Compile { expr: String, message: String },
    /// Evaluating the expression failed, e.g. an index out of range or a missing key.
    #[error("condition `{expr}` could not be evaluated: {message}")]
    Eval { expr: String, message: String },
    /// The expression evaluated to something other than a `bool`.
    #[error("condition `{expr}` must be true or false, but it evaluated to {got}")]
    NotBool { expr: String, got: String },
}

impl Condition {
    /// Parses and checks `expr` (see [`check`] for what is checked).
    pub fn compile(expr: &str) -> Result<Condition, ConditionError> {
        let compile_error = |message: String| ConditionError::Compile {
            expr: expr.to_owned(),
            message,
        };
        if expr.len() > MAX_LEN {
            return Err(compile_error(format!(
                "the expression is {} bytes long, more than the {MAX_LEN} allowed",
                expr.len()
            )));
        }
        let env = shared_env().map_err(compile_error)?;
        let (mut ast, source_info) = env
            .parser()
            .parse_with_source_info(expr)
            .map_err(|errors| compile_error(describe_parse_errors(&errors, expr)))?;
        Checker {
            env: &env,
            source_info: &source_info,
            source: expr,
            scope: Vec::new(),
            depth: 0,
        }
        .check(&ast)
        .map_err(compile_error)?;
        let mut defaults = Vec::new();
        rewrite(&mut ast, &mut defaults);
        Ok(Condition {
            source: expr.to_owned(),
            expr: ast,
            defaults: defaults.into(),
            env,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Judges `result`: `Ok(true)` when the condition holds.
    pub fn evaluate(&self, result: &MetricValue) -> Result<bool, ConditionError> {
        let value = self.run(result).map_err(|error| ConditionError::Eval {
            expr: self.source.clone(),
            message: format!(
                "{} (result: {})",
                describe_execution_error(&error),
                show_metric(result)
            ),
        })?;
        match value {
            Value::Bool(verdict) => Ok(verdict),
            other => Err(ConditionError::NotBool {
                expr: self.source.clone(),
                got: format!("{} {}", type_name(&other), show(&other)),
            }),
        }
    }

    fn run(&self, result: &MetricValue) -> Result<Value, ExecutionError> {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        let defaults = Arc::clone(&self.defaults);
        ctx.add_function(LAZY_DEFAULT, move |ftx: &FunctionContext| {
            lazy_default(&defaults, ftx)
        })
        .map_err(internal)?;
        for op in Arith::ALL {
            ctx.add_function(op.function(), move |ftx: &FunctionContext| op.apply(ftx))
                .map_err(internal)?;
        }
        let bound = Box::<dyn Val>::try_from(bind(result))?;
        ctx.add_variable_as_val(RESULT, bound);
        Value::resolve(&self.expr, &ctx)
    }
}

/// Checks that `expr` compiles and only uses `result`, the CEL standard library and this
/// module's helpers, so a typo like `reslt[0] > 1` or `isNan(result)` is refused when the
/// template is checked rather than at the first measurement.
///
/// The error is a [`ConditionError::Compile`], saying where and why.
pub fn check(expr: &str) -> Result<(), ConditionError> {
    Condition::compile(expr).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// The environment: the standard library plus isNaN, isInf and len.
// ---------------------------------------------------------------------------------------

/// Built once: [`Env::stdlib`] registers a hundred or so overloads.
static ENV: LazyLock<Result<Arc<Env>, String>> =
    LazyLock::new(|| build_env().map(Arc::new).map_err(|e| e.to_string()));

fn shared_env() -> Result<Arc<Env>, String> {
    ENV.as_ref()
        .map(Arc::clone)
        .map_err(|e| format!("internal error: the CEL environment could not be built: {e}"))
}

fn build_env() -> Result<Env, DeclarationError> {
    let mut env = Env::stdlib();
    let number_tests: [(&str, Function); 2] =
        [("isNaN", is_nan_overload), ("isInf", is_inf_overload)];
    for (name, test) in number_tests {
        for (t, suffix) in [
            (DOUBLE_TYPE, "double"),
            (INT_TYPE, "int"),
            (UINT_TYPE, "uint"),
        ] {
            env.add_overload(name, &format!("{name}_{suffix}"), vec![t], test)?;
        }
    }
    for (t, suffix) in [
        (LIST_TYPE, "list"),
        (MAP_TYPE, "map"),
        (STRING_TYPE, "string"),
        (BYTES_TYPE, "bytes"),
    ] {
        env.add_overload("len", &format!("len_{suffix}"), vec![t], len_overload)?;
    }
    Ok(env)
}

fn is_nan_overload<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    test_double("isNaN", &args, f64::is_nan)
}

fn is_inf_overload<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    test_double("isInf", &args, f64::is_infinite)
}

/// `test` on a `double` argument; `false` for an `int` or `uint`, which is never NaN or
/// infinite.
fn test_double<'b, 'v>(
    function: &str,
    args: &[CowVal<'_, '_>],
    test: fn(f64) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [arg] = args else {
        return Err(ExecutionError::function_error(
            function,
            format!("takes 1 argument, got {}", args.len()),
        ));
    };
    let verdict = arg
        .downcast_ref::<CelDouble>()
        .is_some_and(|d| test(*d.inner()));
    Ok(CowVal::owned(CelBool::from(verdict)))
}

/// `len(x)`, the same as `size(x)`.
fn len_overload<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [arg] = args.as_slice() else {
        return Err(ExecutionError::function_error(
            "len",
            format!("takes 1 argument, got {}", args.len()),
        ));
    };
    let sizer = arg.as_sizer().ok_or_else(|| {
        ExecutionError::no_such_overload("len", vec![arg.get_type().name().to_owned()])
    })?;
    Ok(CowVal::owned(sizer.size()))
}

fn internal(error: DeclarationError) -> ExecutionError {
    ExecutionError::InternalError(error.to_string())
}

// ---------------------------------------------------------------------------------------
// Evaluation helpers registered on each evaluation context.
// ---------------------------------------------------------------------------------------

/// The `@sluice_default(i)` call standing for the `i`th `default(value, fallback)`.
fn lazy_default(defaults: &[LazyDefault], ftx: &FunctionContext) -> Result<Value, ExecutionError> {
    let entry = ftx
        .args
        .first()
        .and_then(|arg| arg.downcast_ref::<CelInt>())
        .and_then(|i| usize::try_from(*i.inner()).ok())
        .and_then(|i| defaults.get(i))
        .ok_or_else(|| {
            ExecutionError::InternalError("default(): no such rewritten call".to_owned())
        })?;
    match Value::resolve(&entry.value, ftx.ptx) {
        Ok(Value::Null) | Err(_) => Value::resolve(&entry.fallback, ftx.ptx),
        Ok(Value::Float(x)) if x.is_nan() => Value::resolve(&entry.fallback, ftx.ptx),
        Ok(value) => Ok(value),
    }
}

/// An arithmetic operator that promotes a mixed `int`/`double` pair to `double`.
#[derive(Clone, Copy, Debug)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    const ALL: [Arith; 4] = [Arith::Add, Arith::Sub, Arith::Mul, Arith::Div];

    fn of_operator(name: &str) -> Option<Arith> {
        match name {
            operators::ADD => Some(Arith::Add),
            operators::SUBSTRACT => Some(Arith::Sub),
            operators::MULTIPLY => Some(Arith::Mul),
            operators::DIVIDE => Some(Arith::Div),
            _ => None,
        }
    }

    /// The internal function the operator is rewritten to (not writable in CEL source).
    fn function(self) -> &'static str {
        match self {
            Arith::Add => "@sluice_add",
            Arith::Sub => "@sluice_sub",
            Arith::Mul => "@sluice_mul",
            Arith::Div => "@sluice_div",
        }
    }

    fn on_doubles(self, l: f64, r: f64) -> f64 {
        match self {
            Arith::Add => l + r,
            Arith::Sub => l - r,
            Arith::Mul => l * r,
            Arith::Div => l / r,
        }
    }

    fn apply(self, ftx: &FunctionContext) -> Result<Value, ExecutionError> {
        let [lhs, rhs] = ftx.args.as_slice() else {
            return Err(ExecutionError::invalid_argument_count(2, ftx.args.len()));
        };
        if let Some((l, r)) = mixed_numbers(lhs.as_ref(), rhs.as_ref()) {
            return Ok(Value::Float(self.on_doubles(l, r)));
        }
        // Anything else: exactly what the CEL operator does.
        let unsupported = |verb: &'static str| {
            ExecutionError::UnsupportedBinaryOperator(
                verb,
                Value::try_from(lhs.as_ref()).unwrap_or(Value::Null),
                Value::try_from(rhs.as_ref()).unwrap_or(Value::Null),
            )
        };
        let rhs = rhs.as_ref();
        let value = match self {
            Arith::Add => lhs.as_adder().ok_or_else(|| unsupported("add"))?.add(rhs),
            Arith::Sub => lhs
                .as_subtractor()
                .ok_or_else(|| unsupported("sub"))?
                .sub(rhs),
            Arith::Mul => lhs
                .as_multiplier()
                .ok_or_else(|| unsupported("mul"))?
                .mul(rhs),
            Arith::Div => lhs.as_divider().ok_or_else(|| unsupported("div"))?.div(rhs),
        }?;
        Value::try_from(value.as_ref())
    }
}

/// Both operands as `f64`s, when one is a `double` and the other an `int` or `uint`.
fn mixed_numbers(lhs: &dyn Val, rhs: &dyn Val) -> Option<(f64, f64)> {
    let double = |v: &dyn Val| v.downcast_ref::<CelDouble>().map(|d| *d.inner());
    let integer = |v: &dyn Val| {
        // `as` rounds to the nearest double, as CEL's double(int) does.
        v.downcast_ref::<CelInt>()
            .map(|i| *i.inner() as f64)
            .or_else(|| v.downcast_ref::<CelUInt>().map(|u| *u.inner() as f64))
    };
    match (double(lhs), double(rhs)) {
        (Some(l), None) => integer(rhs).map(|r| (l, r)),
        (None, Some(r)) => integer(lhs).map(|l| (l, r)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Binding `result`.
// ---------------------------------------------------------------------------------------

fn bind(result: &MetricValue) -> Value {
    match result {
        MetricValue::Scalar(x) => Value::Float(*x),
        MetricValue::Vector(xs) => {
            Value::List(Arc::new(xs.iter().copied().map(Value::Float).collect()))
        }
        MetricValue::Json(json) => json_to_cel(json),
    }
}

fn json_to_cel(json: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                // Every JSON number that is not an integer has an f64 form.
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(fields) => Value::from(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), json_to_cel(v)))
                .collect::<HashMap<String, Value>>(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Rewriting: `default(x, d)` and mixed-number arithmetic.
// ---------------------------------------------------------------------------------------

/// Rewrites, bottom-up, every `default(x, d)` into `@sluice_default(i)` with `(x, d)` moved
/// to `defaults[i]`, and every `a + b`, `a - b`, `a * b`, `a / b` into the matching
/// [`Arith`] call.
fn rewrite(node: &mut IdedExpr, defaults: &mut Vec<LazyDefault>) {
    match &mut node.expr {
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                rewrite(target, defaults);
            }
            for arg in &mut call.args {
                rewrite(arg, defaults);
            }
            if call.target.is_some() || call.args.len() != 2 {
                return;
            }
            if call.func_name == DEFAULT {
                // Two arguments: both pops succeed.
                if let (Some(fallback), Some(value)) = (call.args.pop(), call.args.pop()) {
                    let index = i64::try_from(defaults.len()).unwrap_or(i64::MAX);
                    defaults.push(LazyDefault { value, fallback });
                    call.func_name = LAZY_DEFAULT.to_owned();
                    call.args = vec![IdedExpr {
                        id: node.id,
                        expr: Expr::Literal(LiteralValue::Int(CelInt::from(index))),
                    }];
                }
            } else if let Some(op) = Arith::of_operator(&call.func_name)
                && !is_accumulation(call)
            {
                call.func_name = op.function().to_owned();
            }
        }
        Expr::Comprehension(c) => {
            let ComprehensionExpr {
                iter_range,
                accu_init,
                loop_cond,
                loop_step,
                result,
                ..
            } = c.as_mut();
            for part in [iter_range, accu_init, loop_cond, loop_step, result] {
                rewrite(part, defaults);
            }
        }
        Expr::List(list) => {
            for element in &mut list.elements {
                rewrite(element, defaults);
            }
        }
        Expr::Map(map) => {
            for entry in &mut map.entries {
                rewrite_entry(&mut entry.expr, defaults);
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                rewrite_entry(&mut entry.expr, defaults);
            }
        }
        Expr::Select(select) => rewrite(&mut select.operand, defaults),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn rewrite_entry(entry: &mut EntryExpr, defaults: &mut Vec<LazyDefault>) {
    match entry {
        EntryExpr::MapEntry(e) => {
            rewrite(&mut e.key, defaults);
            rewrite(&mut e.value, defaults);
        }
        EntryExpr::StructField(f) => rewrite(&mut f.value, defaults),
    }
}

/// The `@result + [x]` / `@result + 1` steps the standard macros generate: left as the
/// CEL operator, which the interpreter runs in place for `map` and `filter`.
fn is_accumulation(call: &CallExpr) -> bool {
    call.args.iter().any(|arg| match &arg.expr {
        Expr::Ident(name) => name.starts_with('@'),
        Expr::List(_) => true,
        _ => false,
    })
}

// ---------------------------------------------------------------------------------------
// Checking names.
// ---------------------------------------------------------------------------------------

/// How deeply an expression may nest. cel 0.15 evaluates recursively, one large stack
/// frame per level, and a stack overflow aborts the whole process: a sum of 3000 terms
/// does on a 2 MiB thread stack (a tokio worker's) in a release build. Real conditions
/// nest a few levels; the standard macros add about three.
const MAX_DEPTH: usize = 100;

/// Walks the parsed expression, refusing unknown variables and functions, and too deep a
/// nesting.
struct Checker<'a> {
    env: &'a Arc<Env>,
    source_info: &'a SourceInfo,
    source: &'a str,
    /// The variables of the enclosing comprehensions, innermost last.
    scope: Vec<String>,
    /// How many nodes enclose the one being checked.
    depth: usize,
}

impl Checker<'_> {
    fn check(&mut self, node: &IdedExpr) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(self.at(
                node.id,
                format!("the expression nests more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.depth += 1;
        let checked = self.check_node(node);
        self.depth -= 1;
        checked
    }

    fn check_node(&mut self, node: &IdedExpr) -> Result<(), String> {
        match &node.expr {
            Expr::Ident(name) => self.check_variable(node.id, name),
            Expr::Select(select) => {
                // `a.b.c` names a type when no variable `a` is in scope, e.g.
                // `google.protobuf.Duration`.
                if let Some(segments) = qualified_name(node)
                    && !self.names_variable(&segments)
                    && self.is_type(&segments.join("."))
                {
                    return Ok(());
                }
                self.check(&select.operand)
            }
            Expr::Call(call) => self.check_call(node.id, call),
            Expr::Comprehension(c) => {
                self.check(&c.iter_range)?;
                self.check(&c.accu_init)?;
                let outer = self.scope.len();
                self.scope.push(c.accu_var.clone());
                self.check(&c.result)?;
                self.scope.push(c.iter_var.clone());
                self.scope.extend(c.iter_var2.iter().cloned());
                let inner = self
                    .check(&c.loop_cond)
                    .and_then(|()| self.check(&c.loop_step));
                self.scope.truncate(outer);
                inner
            }
            Expr::List(list) => list.elements.iter().try_for_each(|e| self.check(e)),
            Expr::Map(map) => map
                .entries
                .iter()
                .try_for_each(|e| self.check_entry(&e.expr)),
            Expr::Struct(s) => {
                if !self.is_type(s.type_name.trim_start_matches('.')) {
                    return Err(self.at(node.id, format!("unknown type `{}`", s.type_name)));
                }
                s.entries.iter().try_for_each(|e| self.check_entry(&e.expr))
            }
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    fn check_entry(&mut self, entry: &EntryExpr) -> Result<(), String> {
        match entry {
            EntryExpr::MapEntry(e) => {
                self.check(&e.key)?;
                self.check(&e.value)
            }
            EntryExpr::StructField(f) => self.check(&f.value),
        }
    }

    fn check_call(&mut self, id: u64, call: &CallExpr) -> Result<(), String> {
        let name = call.func_name.as_str();
        match call.target.as_deref() {
            None if is_operator(name) => {}
            None => {
                if let Some(&(_, arity)) = HELPERS.iter().find(|(h, _)| *h == name) {
                    if call.args.len() != arity {
                        let plural = if arity == 1 { "" } else { "s" };
                        return Err(self.at_call(
                            id,
                            name,
                            format!(
                                "`{name}` takes {arity} argument{plural}, got {}",
                                call.args.len()
                            ),
                        ));
                    }
                } else if !self.is_function(name) {
                    return Err(self.at_call(id, name, unknown_function(name)));
                }
            }
            Some(target) => {
                // `optional.of(x)` calls the function `optional.of`.
                let qualified = qualified_name(target)
                    .filter(|segments| !self.names_variable(segments))
                    .map(|segments| format!("{}.{name}", segments.join(".")));
                match qualified {
                    Some(function) if self.is_function(&function) => {}
                    // The helpers are functions only: `isNaN(x)`, not `x.isNaN()`.
                    _ if HELPERS.iter().any(|(h, _)| *h == name) => {
                        return Err(self.at_call(
                            id,
                            name,
                            format!("`{name}` is not a method: call it as `{name}(…)`"),
                        ));
                    }
                    _ if self.is_function(name) => self.check(target)?,
                    _ => return Err(self.at_call(id, name, unknown_function(name))),
                }
            }
        }
        call.args.iter().try_for_each(|arg| self.check(arg))
    }

    fn check_variable(&self, id: u64, name: &str) -> Result<(), String> {
        if self.is_variable(name) || self.is_type(name.trim_start_matches('.')) {
            return Ok(());
        }
        Err(self.at(
            id,
            format!("unknown variable `{name}`: the measured value is `{RESULT}`"),
        ))
    }

    fn is_variable(&self, name: &str) -> bool {
        let name = name.trim_start_matches('.');
        name == RESULT || self.scope.iter().any(|v| v == name)
    }

    /// Whether the qualified name `a.b.c` starts with a variable, `a`.
    fn names_variable(&self, segments: &[&str]) -> bool {
        segments.first().is_some_and(|root| self.is_variable(root))
    }

    fn is_type(&self, name: &str) -> bool {
        self.env.types().find_type(name).is_some()
    }

    /// Whether the environment declares `name`, as a function or a member function.
    ///
    /// cel 0.15 has no public lookup by name alone, but [`Context::add_function`] is
    /// documented to refuse exactly the names the environment declares overloads for.
    fn is_function(&self, name: &str) -> bool {
        Context::with_env(Arc::clone(self.env))
            .add_function(name, || Value::Null)
            .is_err()
    }

    /// `message`, prefixed with where node `id` is in the source, and that line with a
    /// caret under it.
    fn at(&self, id: u64, message: String) -> String {
        match self.source_info.offset_for(id) {
            Some((start, _)) => with_location(self.source, start as usize, &message),
            None => message,
        }
    }

    /// Like [`Checker::at`], for the call `id` to `name`: the parser places a call at its
    /// opening parenthesis, the caret goes under the name instead.
    fn at_call(&self, id: u64, name: &str, message: String) -> String {
        let Some((paren, _)) = self.source_info.offset_for(id) else {
            return message;
        };
        let before = prefix(self.source, paren as usize).trim_end();
        let start = match before.strip_suffix(name) {
            Some(rest) => rest.len(),
            None => paren as usize,
        };
        with_location(self.source, start, &message)
    }
}

/// `a.b.c` as `["a", "b", "c"]`, if `node` is an identifier or field selections on one.
fn qualified_name(node: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut node = node;
    loop {
        match &node.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Expr::Select(select) if !select.test => {
                segments.push(select.field.as_str());
                node = &select.operand;
            }
            _ => return None,
        }
    }
}

/// The operators the parser and the standard macros produce as calls.
fn is_operator(name: &str) -> bool {
    use operators::*;
    [
        CONDITIONAL,
        LOGICAL_AND,
        LOGICAL_OR,
        LOGICAL_NOT,
        SUBSTRACT,
        ADD,
        MULTIPLY,
        DIVIDE,
        MODULO,
        EQUALS,
        NOT_EQUALS,
        GREATER_EQUALS,
        LESS_EQUALS,
        GREATER,
        LESS,
        NEGATE,
        INDEX,
        OPT_INDEX,
        OPT_SELECT,
        NOT_STRICTLY_FALSE,
        IN,
    ]
    .contains(&name)
}

fn unknown_function(name: &str) -> String {
    let mut message = format!("unknown function `{name}`");
    if let Some((helper, _)) = HELPERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(name)) {
        let _ = write!(message, " (did you mean `{helper}`?)");
    }
    message
}

// ---------------------------------------------------------------------------------------
// Messages.
// ---------------------------------------------------------------------------------------

/// `line:column: message`, then the source line with a caret under the column.
/// `offset` is a byte offset into `source`, as cel's source info gives; the column counts
/// characters.
fn with_location(source: &str, offset: usize, message: &str) -> String {
    let before = prefix(source, offset);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_no = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line = source[line_start..].lines().next().unwrap_or_default();
    format!(
        "{line_no}:{column}: {message}\n | {line}\n | {:>column$}",
        "^"
    )
}

/// `source` up to byte `offset`, backing off to a character boundary.
fn prefix(source: &str, offset: usize) -> &str {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    &source[..end]
}

fn describe_parse_errors(errors: &ParseErrors, source: &str) -> String {
    // cel reports its recursion limit as a garbled syntax error, followed by errors
    // about the parse it abandoned.
    if let Some(error) = errors
        .errors
        .iter()
        .find(|e| e.msg.contains("Recursion limit"))
    {
        let (line, column) = error.pos;
        return format!("{line}:{column}: the expression nests too deeply");
    }
    let mut lines = Vec::new();
    for error in &errors.errors {
        let (line, column) = error.pos;
        let caret = source
            .lines()
            .nth(usize::try_from(line - 1).unwrap_or(0))
            .filter(|_| line >= 1 && column >= 1)
            .map(|text| {
                format!(
                    "\n | {text}\n | {:>width$}",
                    "^",
                    width = usize::try_from(column).unwrap_or(1)
                )
            })
            .unwrap_or_default();
        lines.push(format!("{line}:{column}: {}{caret}", error.msg));
    }
    if lines.is_empty() {
        lines.push("syntax error".to_owned());
    }
    lines.join("\n")
}

fn describe_execution_error(error: &ExecutionError) -> String {
    match error {
        ExecutionError::IndexOutOfBounds(index) => {
            format!(
                "index {} is out of range (wrap it in default(…, fallback) to allow that)",
                show(index)
            )
        }
        ExecutionError::NoSuchKey(key) => format!("no such key `{key}`"),
        // Names are checked when compiling: what is left is a function called as a
        // method, like `result.int()`.
        ExecutionError::UndeclaredReference(name) => {
            format!("no method `{name}` (call it as a function: `{name}(…)`?)")
        }
        ExecutionError::ValuesNotComparable(l, r) if is_nan(l) || is_nan(r) => format!(
            "NaN cannot be compared with {}: use isNaN(…) or default(…, fallback) to handle it",
            show(if is_nan(l) { r } else { l })
        ),
        ExecutionError::ValuesNotComparable(l, r) => format!(
            "cannot compare {} {} with {} {}",
            type_name(l),
            show(l),
            type_name(r),
            show(r)
        ),
        ExecutionError::UnsupportedBinaryOperator(op, l, r) => format!(
            "cannot {} {} {} and {} {}",
            match *op {
                "sub" => "subtract",
                "mul" => "multiply",
                "div" => "divide",
                "rem" => "take the remainder of",
                other => other,
            },
            type_name(l),
            show(l),
            type_name(r),
            show(r)
        ),
        ExecutionError::UnsupportedIndex(index, target) => format!(
            "cannot index {} with {} {}",
            type_name(target),
            type_name(index),
            show(index)
        ),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "remainder by zero".to_owned(),
        ExecutionError::NoSuchOverload(overload) => describe_overload(overload),
        ExecutionError::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        ExecutionError::FunctionError { function, message } => format!("{function}(): {message}"),
        other => other.to_string(),
    }
}

/// A call or operator that has no overload for its arguments' types.
fn describe_overload(overload: &cel::OverloadError) -> String {
    let types = overload.argument_types();
    let function = overload.function();
    let numeric = |t: &String| matches!(t.as_str(), "double" | "int" | "uint");
    match function {
        // Numbers always compare, except a NaN: cel 0.15 refuses to order it.
        operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS
            if types.iter().all(numeric) =>
        {
            format!(
                "a NaN cannot be compared with `{}`: use isNaN(…) or default(…, fallback) to handle it",
                operator_symbol(function).unwrap_or(function)
            )
        }
        "_._" | operators::OPT_SELECT => format!(
            "cannot select a field of a {}: only a map (a JSON object) has fields",
            types.first().map_or("value", String::as_str)
        ),
        operators::INDEX | operators::OPT_INDEX => format!(
            "cannot index a {} with a {}",
            types.first().map_or("value", String::as_str),
            types.get(1).map_or("value", String::as_str)
        ),
        _ => {
            let what = match operator_symbol(function) {
                Some(symbol) => format!("operator `{symbol}`"),
                None => format!("function `{function}`"),
            };
            format!("{what} does not apply to ({})", types.join(", "))
        }
    }
}

/// How an operator is written, from its internal name (`_<_` is `<`).
fn operator_symbol(name: &str) -> Option<&'static str> {
    use operators::*;
    Some(match name {
        CONDITIONAL => "?:",
        LOGICAL_AND => "&&",
        LOGICAL_OR => "||",
        LOGICAL_NOT => "!",
        SUBSTRACT | NEGATE => "-",
        ADD => "+",
        MULTIPLY => "*",
        DIVIDE => "/",
        MODULO => "%",
        EQUALS => "==",
        NOT_EQUALS => "!=",
        GREATER_EQUALS => ">=",
        LESS_EQUALS => "<=",
        GREATER => ">",
        LESS => "<",
        INDEX => "[]",
        IN => "in",
        _ => return None,
    })
}

fn is_nan(value: &Value) -> bool {
    matches!(value, Value::Float(x) if x.is_nan())
}

/// The CEL name of a value's type.
fn type_name(value: &Value) -> String {
    match value {
        Value::Int(_) => "int".to_owned(),
        Value::UInt(_) => "uint".to_owned(),
        Value::Float(_) => "double".to_owned(),
        Value::String(_) => "string".to_owned(),
        Value::Bool(_) => "bool".to_owned(),
        Value::Null => "null".to_owned(),
        Value::List(_) => "list".to_owned(),
        Value::Map(_) => "map".to_owned(),
        other => other.type_of().to_string(),
    }
}

/// Longest rendering of a value kept in a message.
const MAX_SHOWN: usize = 120;

/// A value as CEL would write it: `0.5`, `1`, `"ok"`, `[1, 2]`, `{"a": 1}`.
fn show(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    truncate(out)
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}u");
        }
        Value::Float(x) => out.push_str(&show_number(*x)),
        Value::String(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Null => out.push_str("null"),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if out.len() > MAX_SHOWN {
                    out.push('…');
                    break;
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Map(map) => {
            let mut entries: Vec<_> = map.map.iter().collect();
            entries.sort_by_key(|(k, _)| format!("{k:?}"));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if out.len() > MAX_SHOWN {
                    out.push('…');
                    break;
                }
                write_value(out, &Value::from(k));
                out.push_str(": ");
                write_value(out, v);
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

fn show_number(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{x}")
    }
}

/// The measured value, as in the measurement's `value`.
fn show_metric(result: &MetricValue) -> String {
    match result {
        MetricValue::Scalar(x) => show_number(*x),
        MetricValue::Vector(xs) => truncate(format!(
            "[{}]",
            xs.iter()
                .map(|x| show_number(*x))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        MetricValue::Json(json) => truncate(json.to_string()),
    }
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_SHOWN) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, result: MetricValue) -> Result<bool, ConditionError> {
        Condition::compile(expr)?.evaluate(&result)
    }

    fn holds(expr: &str, result: MetricValue) -> bool {
        match eval(expr, result.clone()) {
            Ok(verdict) => verdict,
            Err(e) => panic!("`{expr}` with {result:?}: {e}"),
        }
    }

    fn scalar(x: f64) -> MetricValue {
        MetricValue::Scalar(x)
    }

    fn vector(xs: &[f64]) -> MetricValue {
        MetricValue::Vector(xs.to_vec())
    }

    fn json(v: serde_json::Value) -> MetricValue {
        MetricValue::Json(v)
    }

    fn compile_error(expr: &str) -> String {
        match check(expr) {
            Err(ConditionError::Compile { expr: e, message }) => {
                assert_eq!(e, expr);
                message
            }
            other => panic!("`{expr}` should not compile, got {other:?}"),
        }
    }

    fn eval_error(expr: &str, result: MetricValue) -> String {
        match eval(expr, result) {
            Err(ConditionError::Eval { expr: e, message }) => {
                assert_eq!(e, expr);
                message
            }
            other => panic!("`{expr}` should fail to evaluate, got {other:?}"),
        }
    }

    // --- scalar ---------------------------------------------------------------------

    #[test]
    fn a_scalar_compares_with_double_and_int_literals() {
        assert!(holds("result >= 0.95", scalar(0.97)));
        assert!(!holds("result >= 0.95", scalar(0.5)));
        assert!(holds("result == 1", scalar(1.0)));
        assert!(!holds("result == 1", scalar(1.5)));
        assert!(holds("result != 1", scalar(1.5)));
        assert!(holds("result > 1", scalar(1.5)));
        assert!(!holds("result > 1", scalar(1.0)));
        assert!(holds("result <= 1", scalar(1.0)));
        assert!(holds("1 < result", scalar(1.5)));
        assert!(holds("result < 0.05", scalar(0.01)));
    }

    #[test]
    fn arithmetic_mixing_a_double_and_an_int_is_done_in_double() {
        assert!(holds("result * 100 > 5", scalar(0.06)));
        assert!(!holds("result * 100 > 5", scalar(0.04)));
        assert!(holds("100 - result * 100 < 5", scalar(0.97)));
        assert!(holds("result / 2 == 0.25", scalar(0.5)));
        assert!(holds("result + 1 == 1.5", scalar(0.5)));
        assert!(holds("result[0] * 100 >= 95", vector(&[0.95])));
        // Division by an int zero is IEEE division, as for doubles.
        assert!(holds("isInf(result / 0)", scalar(1.0)));
    }

    #[test]
    fn arithmetic_without_a_double_is_unchanged() {
        assert!(holds("len(result) - 1 == 0", vector(&[0.5])));
        assert!(holds("7 / 2 == 3", scalar(0.0)), "int division stays int");
        assert!(holds("'a' + 'b' == 'ab'", scalar(0.0)));
        assert!(holds("[1] + [2.0] == [1, 2.0]", scalar(0.0)));
        assert!(holds(
            "result.map(x, x * 2) == [2.0, 4.0]",
            vector(&[1.0, 2.0])
        ));
        let message = eval_error("1 / 0 == 1", scalar(0.0));
        assert!(message.contains("division by zero"), "{message}");
        let message = eval_error("result + 'a' == 'a'", scalar(1.0));
        assert!(
            message.contains("cannot add double 1 and string \"a\""),
            "{message}"
        );
    }

    // --- vector ---------------------------------------------------------------------

    #[test]
    fn a_one_element_vector_is_indexed() {
        assert!(holds("result[0] >= 0.95", vector(&[0.99])));
        assert!(!holds("result[0] >= 0.95", vector(&[0.9])));
        assert!(holds("result[0] < 0.05", vector(&[0.01])));
        assert!(holds("result[0] > 1", vector(&[2.0])));
        assert!(!holds("result[0] > 1", vector(&[1.0])));
        assert!(holds("result[0] == 1", vector(&[1.0])));
    }

    #[test]
    fn a_vector_of_several_elements_supports_the_list_macros() {
        let v = vector(&[0.92, 0.97, 0.99]);
        assert!(holds("result[2] > result[0]", v.clone()));
        assert!(holds("result.all(x, x > 0.9)", v.clone()));
        assert!(!holds("result.all(x, x > 0.95)", v.clone()));
        assert!(holds("result.exists(x, x > 0.98)", v.clone()));
        assert!(!holds("result.exists(x, x > 1)", v.clone()));
        assert!(holds("result.exists_one(x, x > 0.98)", v.clone()));
        assert!(holds("size(result.filter(x, x > 0.95)) == 2", v.clone()));
        assert!(holds("0.97 in result", v));
    }

    #[test]
    fn len_is_an_alias_of_size() {
        let v = vector(&[0.5, 0.6]);
        assert!(holds("len(result) > 0", v.clone()));
        assert!(holds("len(result) == 2", v.clone()));
        assert!(holds("size(result) == 2", v.clone()));
        assert!(holds("result.size() == len(result)", v));
        assert!(holds("len(result) == 0", vector(&[])));
        assert!(holds("len(result.name) == 3", json(json!({"name": "api"}))));
        assert!(holds("len(result) == 1", json(json!({"a": 1}))));
        let message = eval_error("len(result) == 1", scalar(1.0));
        assert!(
            message.contains("function `len` does not apply to (double)"),
            "{message}"
        );
    }

    // --- empty vector ---------------------------------------------------------------

    #[test]
    fn an_empty_vector_is_an_evaluation_error_unless_guarded() {
        let message = eval_error("result[0] >= 0.95", vector(&[]));
        assert!(message.contains("index 0 is out of range"), "{message}");
        assert!(message.contains("(result: [])"), "{message}");
        assert!(holds("len(result) == 0 || result[0] >= 0.95", vector(&[])));
        assert!(!holds("len(result) > 0 && result[0] >= 0.95", vector(&[])));
    }

    #[test]
    fn default_supplies_a_fallback_for_a_missing_element() {
        assert!(!holds("default(result[0], 0) >= 0.95", vector(&[])));
        assert!(holds("default(result[0], 1) >= 0.95", vector(&[])));
        assert!(holds("default(result[0], 0) >= 0.95", vector(&[0.99])));
        assert!(!holds("default(result[0], 1) >= 0.95", vector(&[0.5])));
        assert!(holds("default(result[1], 0.0) == 0.0", vector(&[0.5])));
    }

    #[test]
    fn default_evaluates_its_fallback_only_when_needed() {
        // The fallback would fail, but is not reached.
        assert!(holds("default(result[0], result[5]) == 1", vector(&[1.0])));
        // When it is reached, its own failure is reported.
        let message = eval_error("default(result[1], result[5]) > 0", vector(&[1.0]));
        assert!(message.contains("index 5 is out of range"), "{message}");
    }

    #[test]
    fn default_nests_and_works_inside_comprehensions() {
        let v = vector(&[1.0, 2.0]);
        assert!(holds(
            "default(default(result[2], result[1]), 0) == 2",
            v.clone()
        ));
        assert!(holds("default(result[2], default(result[3], 7)) == 7", v));
        let items = json(json!({"items": [{"latency": 50}, {"status": "up"}]}));
        assert!(holds(
            "result.items.all(i, default(i.latency, 0) < 100)",
            items.clone()
        ));
        assert!(!holds(
            "result.items.all(i, default(i.latency, 500) < 100)",
            items
        ));
    }

    // --- NaN and infinities ---------------------------------------------------------

    #[test]
    fn is_nan_guards_a_nan_scalar() {
        assert!(holds("isNaN(result) || result < 0.05", scalar(f64::NAN)));
        assert!(holds("isNaN(result) || result < 0.05", scalar(0.01)));
        assert!(!holds("isNaN(result) || result < 0.05", scalar(0.5)));
        // `||` absorbs the error of ordering a NaN either way round.
        assert!(holds("result < 0.05 || isNaN(result)", scalar(f64::NAN)));
        assert!(holds("isNaN(result)", scalar(f64::NAN)));
        assert!(!holds("isNaN(result)", scalar(1.0)));
        assert!(!holds("isNaN(result)", scalar(f64::INFINITY)));
        assert!(!holds("isNaN(1) || isNaN(1u)", scalar(0.0)));
        assert!(holds("isNaN(result[0])", vector(&[f64::NAN])));
    }

    #[test]
    fn ordering_a_nan_is_an_evaluation_error_that_says_how_to_guard() {
        let message = eval_error("result < 0.05", scalar(f64::NAN));
        assert!(message.contains("NaN cannot be compared"), "{message}");
        assert!(message.contains("isNaN"), "{message}");
        // Equality does not fail: a NaN equals nothing.
        assert!(!holds("result == result", scalar(f64::NAN)));
        assert!(holds("result != 0.5", scalar(f64::NAN)));
    }

    #[test]
    fn default_replaces_a_nan_or_a_null() {
        assert!(holds("default(result, 0) < 0.05", scalar(f64::NAN)));
        assert!(!holds("default(result, 1) < 0.05", scalar(f64::NAN)));
        assert!(holds(
            "default(result[0], 1.0) >= 0.95",
            vector(&[f64::NAN])
        ));
        assert!(holds("default(result, 0.5) == 0.5", json(json!(null))));
        assert!(holds("default(result.v, 3) == 3", json(json!({"v": null}))));
        assert!(holds("default(result, 0) == 0.25", scalar(0.25)));
    }

    #[test]
    fn is_inf_detects_both_infinities() {
        assert!(holds("isInf(result)", scalar(f64::INFINITY)));
        assert!(holds("isInf(result)", scalar(f64::NEG_INFINITY)));
        assert!(!holds("isInf(result)", scalar(1e308)));
        assert!(!holds("isInf(result)", scalar(f64::NAN)));
        assert!(!holds("isInf(1)", scalar(0.0)));
        assert!(holds("result > 1000", scalar(f64::INFINITY)));
        assert!(holds("result < 0", scalar(f64::NEG_INFINITY)));
        assert!(holds("isInf(result[1])", vector(&[0.0, f64::NEG_INFINITY])));
    }

    // --- JSON -----------------------------------------------------------------------

    #[test]
    fn json_objects_strings_and_numbers_are_bound() {
        assert!(holds("result.ok == true", json(json!({"ok": true}))));
        assert!(!holds("result.ok == true", json(json!({"ok": false}))));
        assert!(holds("result == \"ok\"", json(json!("ok"))));
        assert!(!holds("result == 'ok'", json(json!("degraded"))));
        assert!(holds(
            "result.latency_ms < 200",
            json(json!({"latency_ms": 150}))
        ));
        assert!(!holds(
            "result.latency_ms < 200",
            json(json!({"latency_ms": 250.5}))
        ));
        assert!(holds(
            "result.latency_ms < 200.5",
            json(json!({"latency_ms": 200}))
        ));
        assert!(holds(
            "result['latency-ms'] == 3",
            json(json!({"latency-ms": 3}))
        ));
        assert!(holds("result.count * 0.5 == 5", json(json!({"count": 10}))));
        assert!(
            holds("result.count % 3 == 1", json(json!({"count": 10}))),
            "ints stay ints"
        );
        assert!(holds("result.n > 0", json(json!({"n": u64::MAX}))));
    }

    #[test]
    fn json_lists_and_nested_objects_are_bound() {
        let health = json(json!({"items": [{"status": "healthy"}, {"status": "down"}]}));
        assert!(holds(
            "result.items[0].status == \"healthy\"",
            health.clone()
        ));
        assert!(holds(
            "result.items.exists(i, i.status == 'down')",
            health.clone()
        ));
        assert!(!holds(
            "result.items.all(i, i.status == 'healthy')",
            health.clone()
        ));
        assert!(holds("has(result.items)", health.clone()));
        assert!(!holds("has(result.missing)", health));
    }

    #[test]
    fn a_job_result_is_a_bool() {
        assert!(holds("result == true", json(json!(true))));
        assert!(holds("result", json(json!(true))));
        assert!(!holds("result", json(json!(false))));
        assert!(holds("result == null", json(json!(null))));
    }

    // --- errors ---------------------------------------------------------------------

    #[test]
    fn a_syntax_error_says_where() {
        let message = compile_error("result[0] >=");
        assert!(message.starts_with("1:13: "), "{message}");
        assert!(message.contains("| result[0] >="), "{message}");
        let error = check("result[0] >=").expect_err("a syntax error");
        assert!(error.to_string().contains("`result[0] >=`"), "{error}");
        compile_error("result[0 >= 1");
        compile_error("");
    }

    #[test]
    fn an_unknown_variable_is_refused() {
        let message = compile_error("reslt[0] > 1");
        assert!(
            message.starts_with("1:1: unknown variable `reslt`"),
            "{message}"
        );
        let message = compile_error("result[0] > 0.5 &&\n  total > 1");
        assert!(
            message.starts_with("2:3: unknown variable `total`"),
            "{message}"
        );
        // A comprehension's variable is only defined inside it.
        let message = compile_error("result.all(x, x > 0) && x > 1");
        assert!(message.contains("unknown variable `x`"), "{message}");
        // Positions count characters, not bytes.
        let message = compile_error("'é' == 'é' || foo > 1");
        assert!(
            message.starts_with("1:15: unknown variable `foo`"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_function_is_refused() {
        let message = compile_error("isNan(result)");
        assert!(
            message.starts_with("1:1: unknown function `isNan`"),
            "{message}"
        );
        assert!(message.contains("did you mean `isNaN`?"), "{message}");
        let message = compile_error("result[0] > 0 && asFloat(result[0]) > 1");
        assert!(
            message.starts_with("1:18: unknown function `asFloat`"),
            "{message}"
        );
        let message = compile_error("result.foo()");
        assert!(message.contains("unknown function `foo`"), "{message}");
        let message = compile_error("default(result[0]) > 1");
        assert!(
            message.contains("`default` takes 2 arguments, got 1"),
            "{message}"
        );
        let message = compile_error("isNaN(result, 1)");
        assert!(
            message.contains("`isNaN` takes 1 argument, got 2"),
            "{message}"
        );
    }

    #[test]
    fn the_standard_library_passes_the_check() {
        for expr in [
            "int(result) == 1",
            "double(result.count) > 1.5",
            "string(result) == '1'",
            "type(result) == double",
            "result.name.startsWith('api') && result.name.matches('^a.i$')",
            "'a' in result.tags",
            "optional.of(result).hasValue()",
            "result.?missing.orValue(1) == 1",
            "dyn(result) == result",
            "google.protobuf.Duration == type(duration('1s'))",
            "[1, 2].map(x, x * 2) == [2, 4] && {'a': 1}.a == 1",
        ] {
            assert!(check(expr).is_ok(), "`{expr}`: {:?}", check(expr));
        }
    }

    #[test]
    fn a_non_bool_result_is_not_bool() {
        match eval("result[0]", vector(&[0.5])) {
            Err(ConditionError::NotBool { expr, got }) => {
                assert_eq!(expr, "result[0]");
                assert_eq!(got, "double 0.5");
            }
            other => panic!("{other:?}"),
        }
        match eval("result", json(json!({"ok": true}))) {
            Err(ConditionError::NotBool { got, .. }) => assert_eq!(got, "map {\"ok\": true}"),
            other => panic!("{other:?}"),
        }
        match eval("result.n + 1", json(json!({"n": 1}))) {
            Err(ConditionError::NotBool { got, .. }) => assert_eq!(got, "int 2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn evaluation_errors_are_errors_not_panics() {
        let message = eval_error("result[3] > 0", vector(&[0.5]));
        assert!(message.contains("index 3 is out of range"), "{message}");
        let message = eval_error("result[-1] > 0", vector(&[0.5]));
        assert!(message.contains("index -1 is out of range"), "{message}");
        let message = eval_error("result.missing == 1", json(json!({"ok": true})));
        assert!(message.contains("no such key `missing`"), "{message}");
        let message = eval_error("result.ok", scalar(1.0));
        assert!(
            message.contains("cannot select a field of a double"),
            "{message}"
        );
        let message = eval_error("result['a'] > 0", vector(&[0.5]));
        assert!(message.contains("cannot index"), "{message}");
        let message = eval_error("result[0.5] > 0", vector(&[0.5]));
        assert!(message.contains("cannot index"), "{message}");
        let message = eval_error("result > 'a'", scalar(1.0));
        assert!(
            message.contains("operator `>` does not apply to (double, string)"),
            "{message}"
        );
        // Only names are checked when compiling, not whether a function is a method.
        let message = eval_error("result.int() == 1", scalar(1.0));
        assert!(message.contains("no method `int`"), "{message}");
        let message = eval_error("result.ok == true", json(json!([1, 2])));
        assert!(message.contains("(result: [1,2])"), "{message}");
    }

    // --- the value ------------------------------------------------------------------

    #[test]
    fn a_condition_is_compiled_once_and_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Condition>();
        assert_send_sync::<ConditionError>();

        let condition = Condition::compile("default(result[0], 0) >= 0.95").expect("compiles");
        assert_eq!(condition.source(), "default(result[0], 0) >= 0.95");
        let verdicts: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = [vec![0.99], vec![0.5], vec![]]
                .into_iter()
                .map(|xs| {
                    let condition = &condition;
                    s.spawn(move || {
                        condition
                            .evaluate(&MetricValue::Vector(xs))
                            .expect("evaluates")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        assert_eq!(verdicts, [true, false, false]);
    }

    #[test]
    fn helpers_are_functions_not_methods() {
        let message = compile_error("result.isNaN()");
        assert!(message.contains("`isNaN` is not a method"), "{message}");
        let message = compile_error("result[0].default(0) > 1");
        assert!(message.contains("`default` is not a method"), "{message}");
    }

    #[test]
    fn an_expression_too_long_or_too_deep_is_refused() {
        // cel 0.15 recurses per level, parsing and evaluating: a stack overflow would
        // abort the process. Its parser, unoptimized, needs more than the 2 MiB of a
        // test thread for the 96 levels it accepts.
        let checks = std::thread::Builder::new().stack_size(64 << 20).spawn(|| {
            let long = format!("result > 0 || {}", vec!["false"; 1000].join(" || "));
            let message = compile_error(&long);
            assert!(message.contains("more than the 4096 allowed"), "{message}");
            let deep = vec!["1"; 150].join(" + ") + " > 0";
            let message = compile_error(&deep);
            assert!(
                message.contains("nests more than 100 levels deep"),
                "{message}"
            );
            let nested = "(".repeat(120) + "result" + &")".repeat(120) + " > 0";
            let message = compile_error(&nested);
            assert!(message.contains("nests too deeply"), "{message}");
            assert!(holds(
                &(vec!["result"; 90].join(" + ") + " == 90"),
                scalar(1.0)
            ));
        });
        match checks.map(std::thread::JoinHandle::join) {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("could not spawn the test thread: {e}"),
        }
    }
}
