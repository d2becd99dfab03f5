//! `burst`: not written yet.

use crate::harness::params::Params;
use crate::harness::report::Report;
use crate::harness::server::Env;

pub async fn burst(_env: &Env, _p: &Params, _report: &mut Report) -> Result<(), String> {
    Ok(())
}
