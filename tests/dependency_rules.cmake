# The seams of docs/architecture.md: engine/ and sagas/ include neither SQLite nor ZeroMQ;
# transports/ does not include SQLite; persistence/ does not include ZeroMQ; the engine opens
# no HTTP port (cpp-httplib lives in observability/http).
function(check_tree dir forbidden_regex what)
  file(GLOB_RECURSE files "${SOURCE_DIR}/${dir}/*.hpp" "${SOURCE_DIR}/${dir}/*.cpp" "${SOURCE_DIR}/${dir}/*.h")
  foreach(file IN LISTS files)
    file(STRINGS "${file}" hits REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"](${forbidden_regex})")
    if(hits)
      message(SEND_ERROR "${file} includes ${what}: ${hits}")
    endif()
  endforeach()
endfunction()

set(sqlite "sqlite3\\.h|saga/sqlite_store\\.hpp")
set(zmq "zmq\\.h|zmq\\.hpp|zmq_addon\\.hpp")
check_tree(engine "${sqlite}|${zmq}|httplib\\.h" "a SQLite, ZeroMQ or HTTP header")
check_tree(sagas "${sqlite}|${zmq}" "a SQLite or ZeroMQ header")
check_tree(transports "${sqlite}" "a SQLite header")
check_tree(persistence "${zmq}" "a ZeroMQ header")
