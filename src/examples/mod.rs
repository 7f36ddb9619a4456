//! Apps built into the shipped `baseplate-serve`, so it runs with no code of
//! the user's (see `fixtures/example.ini`).

pub mod http;
