//! One module per subcommand, each with an options struct and a `run` function.

pub mod attach;
pub mod compare;
pub mod connect;
pub mod dap;
pub mod doctor;
pub mod dump;
pub mod exec;
pub mod family;
pub mod group;
pub mod listen;
pub mod manual;
pub mod ps;
pub mod record;
pub mod remote;
pub mod run;
pub mod secret;
pub mod snapshot;
pub mod top;
pub mod trace;
pub mod web;
