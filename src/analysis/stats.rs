// TEMPORARY STUB (not for commit): the real module comes from wip/stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompareParams {
    pub direction: Direction,
    pub confidence: f64,
    pub tolerance: f64,
    pub min_samples: usize,
}
impl Default for CompareParams {
    fn default() -> Self {
        CompareParams {
            direction: Direction::Either,
            confidence: 0.98,
            tolerance: 0.25,
            min_samples: 10,
        }
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    Pass,
    High,
    Low,
    TooFewSamples,
}
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub canary_n: usize,
    pub stable_n: usize,
    pub canary_median: Option<f64>,
    pub stable_median: Option<f64>,
    pub p_value: Option<f64>,
    pub effect_size: Option<f64>,
    pub classification: Classification,
    pub reason: String,
}
pub fn classify(canary: &[f64], stable: &[f64], _p: &CompareParams) -> Comparison {
    Comparison {
        canary_n: canary.len(),
        stable_n: stable.len(),
        canary_median: None,
        stable_median: None,
        p_value: None,
        effect_size: None,
        classification: Classification::Pass,
        reason: String::new(),
    }
}
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub name: String,
    pub weight: f64,
    pub critical: bool,
    pub classification: Classification,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreVerdict {
    Pass,
    Marginal,
    Fail,
    Inconclusive,
}
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub score: Option<f64>,
    pub verdict: ScoreVerdict,
    pub reason: String,
}
pub fn score(_m: &[Scored], _pass: f64, _marginal: f64) -> Score {
    Score {
        score: None,
        verdict: ScoreVerdict::Inconclusive,
        reason: String::new(),
    }
}
