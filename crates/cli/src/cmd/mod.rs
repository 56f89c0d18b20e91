//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod keygen;
pub mod origin;
pub mod play;
pub mod serve;
pub mod sim;
pub mod token;
