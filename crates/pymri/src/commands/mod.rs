//! One module per subcommand, each with an options struct and a `run` function.

pub mod attach;
pub mod dap;
pub mod dump;
pub mod ps;
pub mod run;
pub mod web;
