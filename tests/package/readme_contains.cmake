# Fails unless README (-DREADME) contains the code of CODE (-DCODE) from its "namespace trip {"
# line on, verbatim.
file(READ "${README}" readme)
file(READ "${CODE}" code)
string(FIND "${code}" "namespace trip {" start)
string(SUBSTRING "${code}" ${start} -1 body)
string(FIND "${readme}" "${body}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "README.md does not contain ${CODE} verbatim; copy it into the README")
endif()
